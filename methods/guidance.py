"""Class conditioning and classifier-free guidance (Ho & Salimans 2022) for any eps model.

code            paper
K               num_classes; labels c in 0..K-1, and K is the null token (the unconditional model)
p_uncond        probability that training replaces c by the null token (label dropout)
w               guidance strength
eps_tilde       (1 + w) eps(x_t, c) - w eps(x_t, null)                    (the paper's eq. 6)
guidance_scale  diffusers' convention s = 1 + w: eps_u + s (eps_c - eps_u), the same formula

One network learns both eps(x, c) and eps(x, null). A model with `num_classes` > 0 exposes a
Prediction whose fn applies the formula above, so every eps sampler (ddpm, ddim, the diffusers
solvers, VDM's ancestral sampler) samples it guided without a line of its own. The labels of
the batch and the guidance come from a `LabelSlot` that `ConditionedSampler` fills for the
duration of one sampler call; a conditional model called outside one is an error, never a
silent unconditional sample.

NFE counts network evaluations per sample: a guided step (w != 0) evaluates the network on the
conditional and the unconditional half, batched as one call of 2B rows, and costs 2. The
runner's hooks count rows per sample (bench/measure/timing.py), so the measured NFE says the same.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch

UNCOND = "uncond"  # the guidance text of unconditional sampling (the null class for every sample)


def drop_labels(y: torch.Tensor, *, p_uncond: float, num_classes: int) -> torch.Tensor:
    """Training labels with each replaced by the null token K with probability p_uncond (global RNG,
    which the harness seeds and checkpoints)."""
    drop = torch.rand(y.shape, device=y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, num_classes), y)


MAX_CLASSES = 100_000


def check_conditioning(cfg: Any) -> None:
    """Raise ValueError for a `num_classes` / `p_uncond` pair that cannot train."""
    if not 0 <= cfg.num_classes <= MAX_CLASSES:
        raise ValueError(f"num_classes={cfg.num_classes} is out of range: use 0 (unconditional) or 1..{MAX_CLASSES}")
    if cfg.num_classes and not 0 < cfg.p_uncond < 1:
        raise ValueError(f"p_uncond={cfg.p_uncond} must be in (0, 1): guidance needs the unconditional model"
                         " (label dropout) and the conditional one")


@dataclasses.dataclass(frozen=True)
class Guidance:
    """How a conditional model is sampled: w >= 0 (w = 0: conditional without guidance), or
    w = None: unconditional (the null class)."""

    w: float | None = 0.0

    @classmethod
    def parse(cls, text: str) -> "Guidance":
        """'0.5' -> w = 0.5; 'uncond' -> unconditional. Raises ValueError with the accepted forms."""
        text = str(text).strip()
        if text == UNCOND:
            return cls(None)
        try:
            w = float(text)
        except ValueError:
            raise ValueError(f"guidance must be a number w >= 0 or {UNCOND!r}, got {text!r}") from None
        if not math.isfinite(w) or w < 0:
            raise ValueError(f"guidance w must be finite and >= 0 (w = 0: conditional, no guidance), got {text!r}")
        return cls(w)

    @property
    def text(self) -> str:
        """The canonical text ('0', '0.5', 'uncond'): a grid's key and the results column `guidance`."""
        if self.w is None:
            return UNCOND
        return str(int(self.w)) if float(self.w).is_integer() else repr(float(self.w))

    @property
    def evaluations(self) -> int:
        """Network evaluations per sample per step: 2 when guided, else 1."""
        return 2 if self.w else 1

    def describe(self) -> dict[str, Any]:
        if self.w is None:
            return {"guidance": UNCOND, "guidance_w": None, "guidance_scale": None, "conditioning": "unconditional"}
        return {"guidance": self.text, "guidance_w": float(self.w), "guidance_scale": 1.0 + float(self.w),
                "conditioning": "conditional" if self.w == 0 else "classifier-free guidance"}


class LabelSlot:
    """The classes of the batch being sampled and their guidance, set for one sampler call."""

    def __init__(self):
        self.labels: torch.Tensor | None = None
        self.guidance: Guidance | None = None


EpsC = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def guided_fn(eps_c: EpsC, slot: LabelSlot, num_classes: int) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """fn(x, t) of a conditional model: eps_c(x, t, c) under the slot's labels and guidance."""

    def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if slot.guidance is None or slot.labels is None:
            raise RuntimeError("a class-conditional model samples through ConditionedSampler (labels and guidance);"
                               " build it with methods.guidance.condition")
        w, c = slot.guidance.w, slot.labels.to(x.device)
        if len(c) != len(x):
            raise RuntimeError(f"{len(c)} labels for a batch of {len(x)}")
        null = torch.full_like(c, num_classes)
        if w is None:
            return eps_c(x, t, null)
        if w == 0:
            return eps_c(x, t, c)
        t = torch.as_tensor(t, device=x.device)
        t2 = t if t.numel() == 1 else torch.cat([t.reshape(-1), t.reshape(-1)])
        eps_cond, eps_uncond = eps_c(torch.cat([x, x]), t2, torch.cat([c, null])).chunk(2)
        return (1 + w) * eps_cond - w * eps_uncond

    return fn


@dataclasses.dataclass
class ConditionedSampler:
    """A sampler of a conditional model: `sampler(noise, *, generator, labels)`; declares the NFE of its
    inner loop times the evaluations per step, and records the guidance in its settings."""

    inner: Any  # a LoopSampler built on the model's (guided) prediction
    slot: LabelSlot
    guidance: Guidance

    @property
    def steps(self) -> int:
        return self.inner.steps

    @property
    def nfe(self) -> int:
        return self.inner.nfe * self.guidance.evaluations

    @property
    def adaptive(self) -> bool:
        return self.inner.adaptive

    @property
    def label(self) -> str:
        return f"{self.inner.label}-{'uncond' if self.guidance.w is None else 'w' + self.guidance.text}"

    @property
    def settings(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.guidance.describe().items() if k != "guidance"}
        if self.guidance.w:
            extra["guidance_batched"] = "conditional and unconditional halves in one call of 2B rows"
        return {**self.inner.settings, **extra}

    @torch.no_grad()
    def __call__(self, noise: torch.Tensor, *, generator: torch.Generator,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is None:
            raise ValueError(f"{self.label}: a class-conditional model needs the labels of the batch")
        self.slot.labels, self.slot.guidance = labels, self.guidance
        try:
            return self.inner(noise, generator=generator)
        finally:
            self.slot.labels = self.slot.guidance = None


def condition(sampler: Any, model: Any, guidance: Guidance | None) -> Any:
    """`sampler` as the runner calls it: itself for an unconditional model, else wrapped with its
    guidance (w = 0 when none is given). Raises ValueError when guidance is asked of an unconditional model."""
    if not model.num_classes(model.cfg):
        if guidance is not None:
            raise ValueError(f"guidance needs a class-conditional model; {model.name} was trained without classes"
                             " (set model.num_classes)")
        return sampler
    if not type(model).guided and guidance is not None and guidance.w != 0:
        raise ValueError(f"{model.name} samples conditionally without guidance (guidance 0 only): it trains no null"
                         f" class, so there is no unconditional prediction to guide with; got {guidance.text}")
    return ConditionedSampler(sampler, model.label_slot, guidance or Guidance(0.0))
