"""One sampling loop over any diffusers scheduler, and the base class of the samplers built on it.

The loop owns what diffusers' pipelines do around `scheduler.step` and what a bare loop
forgets: it starts from `noise * init_noise_sigma`, feeds the network
`scale_model_input(x, t)` (sigma-parameterised schedulers such as Euler and Heun work on
x / sqrt(sigma^2 + 1)), passes the block's generator to stochastic steps and decodes the
last state. The scheduler is copied fresh for every call, so multistep histories never leak
from one batch (or one timing run) into the next.

A sampler on this loop declares its scheduler class and maps its own Options to the
scheduler's arguments. Every argument that changes results is set explicitly there, never
inherited from a diffusers default, and the scheduler's whole configuration (after
`set_timesteps`, which may change some of it) is recorded in `settings`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from typing import Any, ClassVar

import torch

from methods.base import LoopSampler, Model, StepRange
from methods.prediction import Prediction
from methods.grids import Grid
from methods.samplers.base import SamplerDef
from methods.samplers.sigma_loop import MAX_SIGMA_STEPS, build_on_sigmas, diffusers_solve

PREDICTION_TYPES = {"eps": "epsilon", "x0": "sample", "v": "v_prediction"}
SPACINGS = ("trailing", "leading", "linspace")


def diffusers_sample(pred: Prediction, noise: torch.Tensor, *, template, steps: int, step_kwargs: dict,
                     generator: torch.Generator | None) -> torch.Tensor:
    """x_T = noise * init_noise_sigma; for each t: x = step(fn(scale_model_input(x, t), t), t, x)."""
    scheduler = copy.deepcopy(template)
    scheduler.set_timesteps(steps, device=noise.device)
    extra = {"generator": generator} if _takes_generator(type(scheduler)) else {}
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        out = pred.fn(scheduler.scale_model_input(x, t), t)
        x = scheduler.step(out, t, x, **step_kwargs, **extra).prev_sample
    return pred.decode(x)


@functools.cache
def _takes_generator(scheduler_cls: type) -> bool:
    return "generator" in inspect.signature(scheduler_cls.step).parameters


def spacing_settings(scheduler, sigmas) -> dict[str, Any]:
    """A row's grid on a timestep spacing: its name, the scheduler's sigmas and the last one reached (DEIS
    stops at sigma(t = 0), not at 0)."""
    spacing = scheduler.config.get("timestep_spacing", "linspace")
    if getattr(scheduler.config, "use_karras_sigmas", False) or scheduler.config.get("use_karras_sigmas"):
        spacing += " (diffusers' karras sigmas)"
    elif scheduler.config.get("use_exponential_sigmas"):
        spacing += " (diffusers' exponential sigmas)"
    if sigmas is None:
        return {"grid": spacing}
    return {"grid": spacing, "final": "zero" if float(sigmas[-1]) == 0 else "sigma_min",
            "sigmas": [float(f"{s:.6g}") for s in sigmas.tolist()], "final_sigma": float(sigmas[-1])}


def recorded_config(scheduler) -> dict[str, Any]:
    """The scheduler's configuration as a results row records it (a trained beta table is summarised)."""
    out = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    if out.get("trained_betas") is not None:
        out["trained_betas"] = f"{len(out['trained_betas'])} values from the model's schedule"
    return {"scheduler": type(scheduler).__name__, **out}


class DiffusersSampler(SamplerDef):
    """A sampler whose update is a diffusers scheduler's `step`. On a timestep spacing (trailing, leading,
    linspace) it runs the scheduler as diffusers' pipelines do; samplers that also declare the "sigma" grid
    kind run the same scheduler's steps on a sigma grid (methods/samplers/sigma_loop.py)."""

    scheduler_cls: ClassVar[type]
    max_order: ClassVar[int] = 3  # the highest `order` option the scheduler supports
    sigma_state: ClassVar[str] = "vp"  # the state its step walks on a sigma grid: vp (x / sqrt(1 + s^2)) or ve
    # the scheduler's own last-step rules, off on a sigma grid (the grid's `final` makes the step to 0)
    SIGMA_OVERRIDES: ClassVar[dict[str, Any]] = dict(lower_order_final=False, euler_at_final=False,
                                                     final_sigmas_type="sigma_min", use_karras_sigmas=False,
                                                     use_exponential_sigmas=False)

    @classmethod
    def scheduler_kwargs(cls, opts: Any) -> dict[str, Any]:
        """The scheduler arguments these options pin (spacing, sigmas, order, final step ...)."""
        raise NotImplementedError

    @classmethod
    def step_kwargs(cls, opts: Any) -> dict[str, Any]:
        return {}

    @classmethod
    def validate(cls, opts: Any) -> None:
        """Raise ValueError for option values the scheduler would reject or silently change."""
        spacing = getattr(opts, "timestep_spacing", None)
        if spacing is not None and spacing not in SPACINGS:
            raise ValueError(f"{cls.name}: unknown timestep_spacing {spacing!r}; choose from {', '.join(SPACINGS)}")
        order = getattr(opts, "order", None)
        if order is not None and not 1 <= order <= cls.max_order:
            raise ValueError(f"{cls.name}: order must be in 1..{cls.max_order}, got {order}")
        cls.scheduler_kwargs(opts)  # raises on an unknown sigma schedule

    @classmethod
    def label(cls, steps: int, opts: Any) -> str:
        return f"{cls.name}-{steps}"

    @classmethod
    def grid_of(cls, grid):
        """A scheduler without `timestep_spacing` (DPMSolverSinglestep) lists its own spacing only."""
        grid = super().grid_of(grid)
        if (grid is not None and grid.is_spacing and grid.name != cls.default_grid
                and "timestep_spacing" not in inspect.signature(cls.scheduler_cls.__init__).parameters):
            raise ValueError(f"{cls.name} runs on {cls.default_grid} timesteps only ({cls.scheduler_cls.__name__} has no"
                             f" timestep_spacing), not on grid {grid.text}")
        return grid

    @classmethod
    def sigma_template(cls, opts: Any):
        """The scheduler whose steps run on a sigma grid: fed x0 (`sample`), its own grid rules off."""
        accepted = inspect.signature(cls.scheduler_cls.__init__).parameters
        kwargs = {**cls.scheduler_kwargs(opts), **cls.SIGMA_OVERRIDES, "prediction_type": "sample"}
        return cls.scheduler_cls(**{k: v for k, v in kwargs.items() if k in accepted})

    @classmethod
    def solve(cls, D, x, sigmas, opts, generator):
        return diffusers_solve(D, x, sigmas, template=cls.sigma_template(opts), state=cls.sigma_state,
                               generator=generator)

    @classmethod
    def settings(cls, opts: Any) -> dict[str, Any]:
        template = cls.sigma_template(opts)
        ignored = ("timestep_spacing", "sigmas", "lower_order_final", "euler_at_final", "final_sigmas_type")
        return {**recorded_config(template), **{k: v for k, v in dataclasses.asdict(opts).items() if k not in ignored},
                "on_sigma_grid": "the scheduler's steps on the grid's sigmas; its own last-step rules off"}

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None):
        if grid is not None and not grid.is_spacing:
            return StepRange(1, MAX_SIGMA_STEPS, "a sigma grid: at most 1000 steps")
        return super().valid_steps(model_cls, model_cfg, opts, grid)

    @classmethod
    def build(cls, model: Model, steps: int, opts: Any = None, grid: Grid | None = None) -> LoopSampler:
        opts = cls.check(model, steps, opts, grid)
        spacing = grid.name if grid is not None and grid.is_spacing else None
        if grid is not None and not grid.is_spacing:
            if getattr(opts, "sigmas", "default") != "default":
                raise ValueError(f"{cls.name}: the option sigmas={opts.sigmas} picks diffusers' own sigmas; on grid"
                                 f" {grid.text} drop it (the grid is the axis)")
            return build_on_sigmas(cls, model, steps, opts, grid)
        if getattr(opts, "clip_sample", False) and len(model.data_shape) < 3:
            # diffusers' thresholding reshapes per image and fails on (N, D) vectors
            raise ValueError(f"{cls.name}: clip_sample clips images to [-1, 1]; this model's data are "
                             f"{len(model.data_shape)}-D vectors, leave clip_sample off")
        pred = model.prediction().discrete()
        kwargs = {**pred.schedule.diffusers, "prediction_type": PREDICTION_TYPES[pred.kind],
                  **cls.scheduler_kwargs(opts)}
        if spacing is not None:  # the grid axis names the spacing
            if "timestep_spacing" in inspect.signature(cls.scheduler_cls.__init__).parameters:
                kwargs["timestep_spacing"] = spacing
            elif spacing != cls.default_grid:
                raise ValueError(f"{cls.name}: {cls.scheduler_cls.__name__} lists {cls.default_grid} timesteps only,"
                                 f" not {spacing}")
        template = cls.scheduler_cls(**kwargs)
        probe = copy.deepcopy(template)
        probe.set_timesteps(steps)  # records what set_timesteps may change (e.g. lower_order_final)
        sigmas = probe.sigmas.double() if getattr(probe, "sigmas", None) is not None else None
        settings = {**recorded_config(probe), **cls.step_kwargs(opts), "schedule": pred.schedule.describe,
                    **spacing_settings(probe, sigmas)}
        loop = functools.partial(diffusers_sample, pred, template=template, steps=steps,
                                 step_kwargs=cls.step_kwargs(opts))
        return LoopSampler(loop, steps=steps, nfe=cls.nfe(steps, opts), label=cls.label(steps, opts),
                           settings=settings)
