"""DDIM (Song, Meng, Ermon 2021): sample a trained DDPM eps-model with S <= T steps
through diffusers' DDIMScheduler. eta = 0 is the deterministic sampler; eta = 1
recovers DDPM-like stochasticity.

code               paper
S (steps)          the length of the sub-sequence tau of [1..T]
eta                eta, sigma_tau_i = eta sqrt((1-abar_prev)/(1-abar)) sqrt(1 - abar/abar_prev)
x0_hat             (x_t - sqrt(1-abar_t) eps_hat) / sqrt(abar_t)
update             x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z

Timestep spacing is pinned per sampler and recorded in every results row: "trailing"
(default; starts at t = T-1, so even S = 1 denoises from pure noise), "leading" or
"linspace". Note diffusers computes the previous timestep as t - T // S; when S does
not divide T that lands up to one index away from the next listed timestep.
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from diffusers import DDIMScheduler

from methods.base import LoopSampler, StepRange
from methods.ddpm import DDPM, EpsModel, scheduler_kwargs
from methods.registry import register_method

SPACINGS = ("trailing", "leading", "linspace")


@dataclasses.dataclass(frozen=True)
class DDIMSamplerConfig:
    eta: float = 0.0
    timestep_spacing: str = "trailing"


def ddim_sample(eps_model: EpsModel, noise: torch.Tensor, *, scheduler: DDIMScheduler, eta: float,
                generator: torch.Generator) -> torch.Tensor:
    """The DDIM update over scheduler.timesteps: one eps_model call per step."""
    x_t = noise
    for t in scheduler.timesteps:
        eps_hat = eps_model(x_t, t.to(x_t.device))
        x_t = scheduler.step(eps_hat, t, x_t, eta=eta, generator=generator if eta > 0 else None).prev_sample
    return x_t


@register_method("ddim")
class DDIM(DDPM):
    """Deterministic (eta=0) or stochastic DDIM sampling of the ddpm checkpoint."""

    trained_as = "ddpm"
    SamplerConfig = DDIMSamplerConfig
    summary = "DDIM: any number of steps over the ddpm checkpoint (eta, timestep spacing recorded)"

    @classmethod
    def valid_steps(cls, cfg) -> StepRange:
        return StepRange(1, cfg.T, "at most the T of the ddpm checkpoint")

    @classmethod
    def default_steps(cls, cfg) -> int:
        return min(50, cfg.T)

    def make_sampler(self, steps: int, opts: DDIMSamplerConfig | None = None) -> LoopSampler:
        opts = opts or DDIMSamplerConfig()
        error = self.valid_steps(self.cfg).error(steps)
        if error:
            raise ValueError(f"ddim: {error}")
        if opts.timestep_spacing not in SPACINGS:
            raise ValueError(f"ddim: unknown timestep_spacing {opts.timestep_spacing!r}; choose from {', '.join(SPACINGS)}")
        if opts.eta < 0:
            raise ValueError(f"ddim: eta must be >= 0, got {opts.eta}")
        kwargs = dict(scheduler_kwargs(self.cfg), timestep_spacing=opts.timestep_spacing, set_alpha_to_one=True,
                      steps_offset=0)
        scheduler = DDIMScheduler(**kwargs)
        scheduler.set_timesteps(steps)
        label = f"ddim-{steps}" + (f"-eta{opts.eta:g}" if opts.eta else "")
        settings = {"scheduler": "DDIMScheduler", "eta": opts.eta, **kwargs}
        loop = functools.partial(ddim_sample, self.eps_model, scheduler=scheduler, eta=opts.eta)
        return LoopSampler(loop, steps=steps, nfe=steps, label=label, settings=settings)
