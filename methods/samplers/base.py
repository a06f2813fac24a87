"""The contract of a sampler: a registered name, a frozen options dataclass, the model kinds it
runs on, and a small loop over a model's Prediction (methods/prediction.py).

A sampler file subclasses `SamplerDef` (or `DiffusersSampler` in diffusers_loop.py, for any
diffusers scheduler), declares `Options` and registers itself with `register_sampler`:

    @register_sampler("euler")
    class Euler(DiffusersSampler):
        Options = EulerOptions
        scheduler_cls = EulerDiscreteScheduler
        ...

`build(model, steps, opts)` returns a LoopSampler (methods/base.py): `sampler(noise, *,
generator) -> samples` with `steps`, the declared `nfe`, a `label` and the `settings` that every
results row records. Sampling options never enter a training config or a run id.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from methods.base import LoopSampler, Model, StepRange
from methods.grids import Grid

MAX_CONTINUOUS_STEPS = 100_000


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A sampler without options."""


class SamplerDef:
    """Base class of every registered sampler; only class attributes and classmethods."""

    name: ClassVar[str] = ""  # set by register_sampler
    Options: ClassVar[type] = NoOptions  # frozen dataclass of the options that change results
    kinds: ClassVar[tuple[str, ...]] = ("eps",)  # prediction kinds it accepts
    times: ClassVar[tuple[str, ...]] = ("discrete", "continuous")  # schedules it accepts
    default_model: ClassVar[str] = "ddpm"  # the model it samples when none is named
    order: ClassVar[int] = 1  # nominal order of the ODE solver (stochastic samplers: of their drift)
    stochastic: ClassVar[bool] = False  # True: fresh noise at each step (SDE / ancestral)
    adaptive: ClassVar[bool] = False  # True: the solver picks its steps (NFE is measured, never declared)
    summary: ClassVar[str] = ""  # one line for `bench list`
    grid_kinds: ClassVar[tuple[str, ...]] = ("spacing",)  # "spacing": diffusers' integer-timestep spacings;
    # "sigma": sigma grids (karras, logsnr, time-uniform) on the model's sigma-space view (methods/grids.py)
    default_grid: ClassVar[str] = "trailing"  # the grid of a cell that names none

    @classmethod
    def grid_of(cls, grid: Grid | None) -> Grid:
        """The grid a cell samples on (its own, or this sampler's default); a ValueError if it cannot."""
        if not cls.grid_kinds:
            if grid is not None:
                raise ValueError(f"{cls.name} samples on its own grid (its model's trained steps or time grid), not on"
                                 f" grid {grid.text}")
            return None
        grid = Grid.parse(cls.default_grid) if grid is None else grid
        kind = "spacing" if grid.is_spacing else "sigma"
        if kind not in cls.grid_kinds:
            what = ("integer timesteps (grids " + ", ".join(("trailing", "leading", "linspace")) + ")"
                    if cls.grid_kinds == ("spacing",) else "sigma grids (karras, logsnr, time-uniform)")
            raise ValueError(f"{cls.name} runs on {what}, not on grid {grid.text}")
        return grid

    @classmethod
    def expected_order(cls, opts: Any, grid: Grid | None) -> int:
        """The order of convergence theory promises for these options on this grid (the strict-order tests
        and orders.csv compare the measured order with it)."""
        return cls.order

    @classmethod
    def settings(cls, opts: Any) -> dict[str, Any]:
        """What a row records of the options."""
        return dataclasses.asdict(opts)

    @classmethod
    def runs_on(cls, model_cls: type[Model]) -> str | None:
        """None if this sampler can sample `model_cls`, else the one-line reason it cannot."""
        if not model_cls.samplable:
            return (f"{model_cls.name} is a stage, not a generative model (no sampler runs on it): train a model in its"
                    " latent space with --latent")
        if model_cls.kind not in cls.kinds:
            return f"{cls.name} needs a model predicting {' or '.join(cls.kinds)}; {model_cls.name} predicts {model_cls.kind}"
        if model_cls.time not in cls.times:
            return f"{cls.name} needs a {' or '.join(cls.times)}-time model; {model_cls.name} is {model_cls.time}-time"
        return None

    @classmethod
    def nfe(cls, steps: int, opts: Any, grid: Grid | None = None) -> int:
        """Network calls made by `steps` steps (what the sampler declares; hooks measure the truth)."""
        return steps

    @classmethod
    def valid_steps(cls, model_cls: type[Model], model_cfg: Any, opts: Any, grid: Grid | None = None) -> StepRange:
        T = model_cls.num_timesteps(model_cfg)
        if T is None:
            return StepRange(1, MAX_CONTINUOUS_STEPS, "continuous time: any number of steps")
        return StepRange(1, T, f"at most the T = {T} timesteps of the {model_cls.name} schedule")

    @classmethod
    def default_steps(cls, model_cls: type[Model], model_cfg: Any) -> int:
        return min(50, cls.valid_steps(model_cls, model_cfg, cls.Options()).hi)

    @classmethod
    def steps_for_nfe(cls, budget: int, model_cls: type[Model], model_cfg: Any, opts: Any,
                      grid: Grid | None = None) -> int | None:
        """The most steps whose NFE stays within `budget`; None when even the fewest steps exceed it."""
        rng = cls.valid_steps(model_cls, model_cfg, opts, grid)
        best = None
        for steps in range(rng.lo, min(rng.hi, budget) + 1):  # every sampler makes at least one call per step
            if cls.nfe(steps, opts, grid) <= budget:
                best = steps
        return best

    @classmethod
    def validate(cls, opts: Any) -> None:
        """Raise ValueError naming the option when a value is out of range (checked before any work)."""

    @classmethod
    def build(cls, model: Model, steps: int, opts: Any, grid: Grid | None = None) -> LoopSampler:
        raise NotImplementedError

    @classmethod
    def check(cls, model: Model, steps: int, opts: Any, grid: Grid | None = None) -> Any:
        """Shared validation of build(): the model kind, the grid and the step count; returns the options."""
        opts = cls.Options() if opts is None else opts
        cls.validate(opts)
        reason = cls.runs_on(type(model))
        if reason:
            raise ValueError(reason)
        cls.grid_of(grid)
        error = cls.valid_steps(type(model), model.cfg, opts, grid).error(steps)
        if error:
            raise ValueError(f"{cls.name}: {error}")
        return opts
