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
import functools
import inspect
from typing import Any, ClassVar

import torch

from methods.base import LoopSampler, Method
from methods.prediction import Prediction
from methods.samplers.base import SamplerDef

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


def recorded_config(scheduler) -> dict[str, Any]:
    """The scheduler's configuration as a results row records it (a trained beta table is summarised)."""
    out = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}
    if out.get("trained_betas") is not None:
        out["trained_betas"] = f"{len(out['trained_betas'])} values from the model's schedule"
    return {"scheduler": type(scheduler).__name__, **out}


class DiffusersSampler(SamplerDef):
    """A sampler whose update is a diffusers scheduler's `step`."""

    scheduler_cls: ClassVar[type]
    max_order: ClassVar[int] = 3  # the highest `order` option the scheduler supports

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
    def build(cls, model: Method, steps: int, opts: Any = None) -> LoopSampler:
        opts = cls.check(model, steps, opts)
        if getattr(opts, "clip_sample", False) and len(model.data_shape) < 3:
            # diffusers' thresholding reshapes per image and fails on (N, D) vectors
            raise ValueError(f"{cls.name}: clip_sample clips images to [-1, 1]; this model's data are "
                             f"{len(model.data_shape)}-D vectors, leave clip_sample off")
        pred = model.prediction().discrete()
        kwargs = {**pred.schedule.diffusers, "prediction_type": PREDICTION_TYPES[pred.kind],
                  **cls.scheduler_kwargs(opts)}
        template = cls.scheduler_cls(**kwargs)
        probe = copy.deepcopy(template)
        probe.set_timesteps(steps)  # records what set_timesteps may change (e.g. lower_order_final)
        settings = {**recorded_config(probe), **cls.step_kwargs(opts), "schedule": pred.schedule.describe}
        loop = functools.partial(diffusers_sample, pred, template=template, steps=steps,
                                 step_kwargs=cls.step_kwargs(opts))
        return LoopSampler(loop, steps=steps, nfe=cls.nfe(steps, opts), label=cls.label(steps, opts),
                           settings=settings)
