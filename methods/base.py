"""The contract of a trained model in `methods/`: a Model trains and exposes a Prediction.

No algorithm lives here. A model file (ddpm.py, vdm.py, ...) subclasses `Model`,
declares a frozen `Config` dataclass and registers itself with `register_model`.
Samplers live apart, in `methods/samplers/` (their contract: `methods/samplers/base.py`).

Training: the harness builds one optimizer per entry of `param_groups()` and, each
iteration, for each name in `phases` calls the module's forward as
`loss = model(x0, phase=name, step=step)["loss"]`, back-propagates and steps that
optimizer before running the next phase. Going through `forward` (not a side method)
is what lets a multi-GPU wrapper synchronise gradients for every phase. After the
optimizer steps the harness moves each target network (`target_modules`, e.g. a
consistency model's theta-) toward its online module with the step-dependent decay
`target_decay(step)`, then calls `after_step(step)`; the evaluation EMA is separate.

Sampling: `prediction()` returns what every sampler needs (methods/prediction.py): the
prediction function with its kind (eps, x0, v, velocity, sample) and its noise schedule.
`denoisers()` names the networks whose forward calls count as NFE.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Protocol

import torch
from torch import nn

from methods.guidance import LabelSlot
from methods.prediction import Prediction


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
    """A sampler built for one model at one step count: what the runner calls and times."""

    steps: int
    nfe: int
    label: str
    settings: dict[str, Any]
    adaptive: bool

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
    adaptive: bool = False  # the solver picks its steps: `nfe` is 0 (unknown in advance), hooks measure it

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        return self.loop(noise, generator=generator)


class Model(nn.Module):
    """Base class of every registered model. Subclasses set the class attributes below."""

    name: ClassVar[str] = ""  # set by register_model
    Config: ClassVar[type]  # a frozen dataclass of hyper-parameters
    phases: ClassVar[tuple[str, ...]] = ("model",)  # optimizer names, in update order
    ema_modules: ClassVar[tuple[str, ...]] = ()  # attribute names of submodules that get an EMA copy
    kind: ClassVar[str] = "eps"  # what prediction() returns (methods/prediction.py KINDS)
    time: ClassVar[str] = "discrete"  # discrete | continuous | trained (the step count is trained: DDGAN's T)
    trainable: ClassVar[bool] = True  # False: built from the data by `from_data`, no checkpoint (the oracle)
    samplable: ClassVar[bool] = True  # False: a stage other runs build on (the autoencoder): trained, never sampled
    native_sampler: ClassVar[str] = ""  # the sampler this model's paper samples it with (previews, `bench sample`)
    steps_are_trained: ClassVar[bool] = False  # True when each step count is its own checkpoint (DDGAN's T)
    needs_mixture: ClassVar[bool] = False  # True: only for isotropic Gaussian mixture data (the oracle)
    key_params: ClassVar[tuple[str, ...]] = ()  # config fields that name a run folder, e.g. ("T",)
    summary: ClassVar[str] = ""  # one line for `bench list`
    target_modules: dict[str, str] = {}  # {target attribute: online attribute}, moved after each optimizer step
    guided: ClassVar[bool] = True  # a class-conditional model samples with classifier-free guidance (eps models);
    # False: conditional sampling only, w = 0 (DDGAN: no null class is trained, so there is no eps(x, null))
    # how it draws samples, which the few-step reading groups rows by: "solver" (a solver integrates its
    # prediction over many steps), "few-step" (trained to sample in one to a few steps: consistency models,
    # MeanFlow), "gan" (a generator per trained step count: DDGAN), "exact" (a score known in closed form,
    # no network), "stage" (never sampled)
    family: ClassVar[str] = "solver"

    def __init__(self, cfg: Any, data_shape: tuple[int, ...]):
        super().__init__()
        self.cfg = cfg
        self.data_shape = tuple(data_shape)
        self.label_slot = LabelSlot()  # a conditional model's labels and guidance during one sampler call

    @classmethod
    def num_classes(cls, cfg: Any) -> int:
        """K of a class-conditional model (`model.num_classes`), 0 for an unconditional one."""
        return int(getattr(cfg, "num_classes", 0) or 0)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Raise ValueError with a one-line reason if `cfg` cannot be trained (e.g. T out of range)."""

    @classmethod
    def num_timesteps(cls, cfg: Any) -> int | None:
        """T of a discrete schedule (samplers take at most T steps); None in continuous time."""
        return None

    @classmethod
    def parents(cls, cfg: Any) -> dict[str, tuple[str, dict[str, Any]]]:
        """The runs this one is built from: {role: (model name, config overrides)}, e.g. a reflow
        student's {"teacher": ("flow", {"model.reflow": 0})}. The harness trains them first and
        passes them to `attach_parents`; their run ids are part of this run's id. {} for most."""
        return {}

    @classmethod
    def family_of(cls, key_params: dict[str, Any]) -> str:
        """The family of one run (`family`), for models whose key params change it (a rectified flow after
        reflow is a few-step generator)."""
        return cls.family

    def attach_parents(self, parents: dict[str, "Model"], *, run_dir: Any, seed: int,
                       log: Callable[[str], None] = print) -> None:
        """Called once before training starts or resumes (before the EMA copies are made), with
        the trained parents (EMA weights, eval mode). Anything derived from them that training
        needs (reflow couplings) must be deterministic given `seed`; it may be cached in `run_dir`."""

    @classmethod
    def steps_overrides(cls, steps: int) -> dict[str, Any]:
        """Config overrides that select the checkpoint for `steps` (DDGAN: {"T": steps})."""
        return {}

    @classmethod
    def phases_for(cls, cfg: Any) -> tuple[str, ...]:
        """The phases a configuration trains (default: all of `phases`; the autoencoder's discriminator
        phase only with an adversarial weight); `param_groups()` has one optimizer for each."""
        return cls.phases

    def param_groups(self) -> dict[str, ParamGroup]:
        raise NotImplementedError

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        """Loss of one phase on a batch of clean data: {"loss": scalar, other logged scalars}. `y`: the
        batch's class labels, given to class-conditional models only (None otherwise)."""
        raise NotImplementedError

    def denoisers(self) -> list[nn.Module]:
        """The networks whose forward calls count as function evaluations (NFE)."""
        raise NotImplementedError

    def prediction(self) -> Prediction:
        """The prediction function, its kind and its noise schedule: all that a sampler may use."""
        raise NotImplementedError

    # --- optional hooks: the defaults say "this method has none" ------------------------------------
    def target_decay(self, step: int) -> float:
        """mu(step) of every target module: theta- <- mu theta- + (1 - mu) theta after the optimizer
        step of iteration `step` (0: a copy; 1: frozen)."""
        return 1.0

    def after_step(self, step: int) -> dict[str, float]:
        """Called after the optimizer steps and target updates of iteration `step` (curricula, ...);
        returns scalars to log."""
        return {}

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
