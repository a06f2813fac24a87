"""The contract every method in `methods/` follows: a Method trains, a Sampler samples.

No algorithm lives here. A method file (ddpm.py, ddim.py, ...) subclasses `Method`,
declares a frozen `Config` dataclass and registers itself with `register_method`.

Training: the harness builds one optimizer per entry of `param_groups()` and, each
iteration, for each name in `phases` calls the module's forward as
`loss = model(x0, phase=name, step=step)["loss"]`, back-propagates and steps that
optimizer before running the next phase. Going through `forward` (not a side method)
is what lets a multi-GPU wrapper synchronise gradients for every phase.

Sampling: `make_sampler(steps)` returns a `Sampler`, a callable
`sampler(noise, *, generator) -> samples` with `steps`, `nfe` (declared) and
`label`. The loop inside is a small pure function over any denoiser callable, so it
can be tested against an exact analytic denoiser without training.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Protocol

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class ParamGroup:
    """One optimizer's parameters and hyper-parameters (AdamW; weight_decay=0 is Adam)."""

    params: list[nn.Parameter]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


@dataclasses.dataclass(frozen=True)
class StepRange:
    """The sampling step counts a method accepts: lo..hi inclusive, with a reason."""

    lo: int
    hi: int
    why: str = ""

    def error(self, steps: int) -> str | None:
        """None if `steps` is valid, else a one-line reason naming the valid range."""
        if self.lo <= steps <= self.hi:
            return None
        span = f"{self.lo}" if self.lo == self.hi else f"{self.lo}..{self.hi}"
        why = f" ({self.why})" if self.why else ""
        return f"steps={steps} is not valid: use {span}{why}"


class Sampler(Protocol):
    """What the runner calls: fixed steps, declared NFE, a label for tables."""

    steps: int
    nfe: int
    label: str
    settings: dict[str, Any]

    def __call__(self, noise: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor: ...


@dataclasses.dataclass
class LoopSampler:
    """A Sampler made of a pure sampling function and the settings it was built with.

    `settings` (scheduler spacing, eta, clipping, ...) is recorded in every results row
    so that two numbers are only compared when they were sampled the same way.
    """

    loop: Callable[..., torch.Tensor]
    steps: int
    nfe: int
    label: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        return self.loop(noise, generator=generator)


class Method(nn.Module):
    """Base class of every registered method. Subclasses set the class attributes below."""

    name: ClassVar[str] = ""  # set by register_method
    Config: ClassVar[type]  # a frozen dataclass of hyper-parameters
    SamplerConfig: ClassVar[type | None] = None  # frozen dataclass of sampling options, if any
    trained_as: ClassVar[str | None] = None  # registry name whose checkpoint this samples; None: itself
    phases: ClassVar[tuple[str, ...]] = ("model",)  # optimizer names, in update order
    ema_modules: ClassVar[tuple[str, ...]] = ()  # attribute names of submodules that get an EMA copy
    steps_are_trained: ClassVar[bool] = False  # True when each step count is its own checkpoint (DDGAN's T)
    key_params: ClassVar[tuple[str, ...]] = ()  # config fields that name a run folder, e.g. ("T",)
    summary: ClassVar[str] = ""  # one line for `bench list`

    def __init__(self, cfg: Any, data_shape: tuple[int, ...]):
        super().__init__()
        self.cfg = cfg
        self.data_shape = tuple(data_shape)

    @classmethod
    def checkpoint_name(cls) -> str:
        """The registry name of the trained checkpoint this method samples."""
        return cls.trained_as or cls.name

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Raise ValueError with a one-line reason if `cfg` cannot be trained (e.g. T out of range)."""

    @classmethod
    def valid_steps(cls, cfg: Any) -> StepRange:
        raise NotImplementedError

    @classmethod
    def default_steps(cls, cfg: Any) -> int:
        """The step count used when none is asked for (previews, `bench sample`)."""
        return cls.valid_steps(cfg).hi

    @classmethod
    def steps_overrides(cls, steps: int) -> dict[str, Any]:
        """Config overrides that select the checkpoint for `steps` (DDGAN: {"T": steps})."""
        return {}

    def param_groups(self) -> dict[str, ParamGroup]:
        raise NotImplementedError

    def forward(self, x0: torch.Tensor, *, phase: str, step: int) -> dict[str, torch.Tensor]:
        """Loss of one phase on a batch of clean data: {"loss": scalar, other logged scalars}."""
        raise NotImplementedError

    def denoisers(self) -> list[nn.Module]:
        """The networks whose forward calls count as function evaluations (NFE)."""
        raise NotImplementedError

    def make_sampler(self, steps: int, opts: Any = None) -> Sampler:
        raise NotImplementedError

    # --- optional hooks: the defaults say "this method has none" ------------------------------------
    def eval_metrics(self, x0: torch.Tensor, *, generator: torch.Generator) -> dict[str, float]:
        """Metrics of a held-out batch, logged during training (VDM: bits/dim); {} when none.
        Every random draw must use `generator`, so that evaluating never moves the training RNG."""
        return {}

    def bpd(self, x0: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor | None:
        """Per-sample bits/dim of 8-bit image data (model space, [-1, 1]) under the method's
        likelihood (bound); None when the method defines no likelihood for this data."""
        return None

    def diagnostics(self) -> dict[str, torch.Tensor]:
        """Small named arrays saved beside comparison results for the report (VDM: gamma(t)); {} when none."""
        return {}

