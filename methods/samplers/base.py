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

from methods.base import LoopSampler, Method, StepRange

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

    @classmethod
    def runs_on(cls, model_cls: type[Method]) -> str | None:
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
    def nfe(cls, steps: int, opts: Any) -> int:
        """Network calls made by `steps` steps (what the sampler declares; hooks measure the truth)."""
        return steps

    @classmethod
    def valid_steps(cls, model_cls: type[Method], model_cfg: Any, opts: Any) -> StepRange:
        T = model_cls.num_timesteps(model_cfg)
        if T is None:
            return StepRange(1, MAX_CONTINUOUS_STEPS, "continuous time: any number of steps")
        return StepRange(1, T, f"at most the T = {T} timesteps of the {model_cls.name} schedule")

    @classmethod
    def default_steps(cls, model_cls: type[Method], model_cfg: Any) -> int:
        return min(50, cls.valid_steps(model_cls, model_cfg, cls.Options()).hi)

    @classmethod
    def steps_for_nfe(cls, budget: int, model_cls: type[Method], model_cfg: Any, opts: Any) -> int | None:
        """The most steps whose NFE stays within `budget`; None when even the fewest steps exceed it."""
        rng = cls.valid_steps(model_cls, model_cfg, opts)
        best = None
        for steps in range(rng.lo, min(rng.hi, budget) + 1):  # every sampler makes at least one call per step
            if cls.nfe(steps, opts) <= budget:
                best = steps
        return best

    @classmethod
    def validate(cls, opts: Any) -> None:
        """Raise ValueError naming the option when a value is out of range (checked before any work)."""

    @classmethod
    def build(cls, model: Method, steps: int, opts: Any) -> LoopSampler:
        raise NotImplementedError

    @classmethod
    def check(cls, model: Method, steps: int, opts: Any) -> Any:
        """Shared validation of build(): the model kind and the step count; returns the options."""
        opts = cls.Options() if opts is None else opts
        cls.validate(opts)
        reason = cls.runs_on(type(model))
        if reason:
            raise ValueError(reason)
        error = cls.valid_steps(type(model), model.cfg, opts).error(steps)
        if error:
            raise ValueError(f"{cls.name}: {error}")
        return opts
