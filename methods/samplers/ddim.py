"""DDIM (Song, Meng, Ermon 2021), eq. 12 over the timesteps diffusers' DDIMScheduler lists.

code        paper
a_t, a_prev alpha_bar of the current and of the next listed timestep (1 after the last)
x0_hat      (x_t - sqrt(1 - a_t) eps_hat) / sqrt(a_t)       (clipped to [-1, 1] with clip_sample)
sigma       eta sqrt((1 - a_prev) / (1 - a_t)) sqrt(1 - a_t / a_prev)
x_prev      sqrt(a_prev) x0_hat + sqrt(1 - a_prev - sigma^2) eps_hat + sigma z

The update is written here, not taken from DDIMScheduler.step: diffusers computes the previous
timestep as t - T // N, which is not the next listed timestep when N does not divide T (trailing
spacing, e.g. N = 3, 16, 80 with T = 1000; diffusers issues #11347, #12633). Measured on the
exact-score oracle, that makes deterministic DDIM stop converging (its error at N = 80 exceeds
the error at N = 40). Where N divides T the two agree (tests/test_samplers.py).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from methods.base import LoopSampler
from methods.prediction import Prediction
from methods.registry import register_sampler
from methods.samplers.base import SamplerDef
from methods.samplers.diffusers_loop import SPACINGS


@dataclasses.dataclass(frozen=True)
class DDIMOptions:
    eta: float = 0.0  # 0: the deterministic sampler; 1: DDPM-like posterior noise
    timestep_spacing: str = "trailing"  # trailing starts at t = T-1, so even one step denoises pure noise
    clip_sample: bool = False  # clip x0_hat to [-1, 1] (images); never for unbounded data


def ddim_sample(pred: Prediction, noise: torch.Tensor, *, timesteps: list[int], alphas_cumprod: torch.Tensor,
                eta: float, clip_sample: bool, generator: torch.Generator | None) -> torch.Tensor:
    """One eps call per listed timestep; a_prev = 1 after the last (the sample is x0_hat)."""
    x = noise
    for i, t in enumerate(timesteps):
        a_t = float(alphas_cumprod[t])
        a_prev = float(alphas_cumprod[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        eps_hat = pred.fn(x, torch.tensor(t, device=x.device))
        x0_hat = (x - (1 - a_t) ** 0.5 * eps_hat) / a_t**0.5
        if clip_sample:
            x0_hat = x0_hat.clamp(-1, 1)
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)) ** 0.5
        x = a_prev**0.5 * x0_hat + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps_hat
        if sigma > 0:
            x = x + sigma * randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return pred.decode(x)


def _grid_settings(spacing: str, timesteps: list[int], schedule) -> dict:
    abar = schedule.alphas_cumprod[torch.tensor(timesteps)]
    sigmas = ((1 - abar) / abar).sqrt().tolist() + [0.0]
    return {"grid": spacing, "final": "zero", "sigmas": [float(f"{s:.6g}") for s in sigmas], "final_sigma": 0.0}


@register_sampler("ddim")
class DDIM(SamplerDef):
    Options = DDIMOptions
    stochastic = False
    summary = "DDIM (eta = 0 deterministic, eta > 0 stochastic), timesteps from diffusers DDIMScheduler"

    @classmethod
    def validate(cls, opts: DDIMOptions) -> None:
        if opts.timestep_spacing not in SPACINGS:
            raise ValueError(f"ddim: unknown timestep_spacing {opts.timestep_spacing!r}; choose from {', '.join(SPACINGS)}")
        if opts.eta < 0:
            raise ValueError(f"ddim: eta must be >= 0, got {opts.eta}")

    @classmethod
    def build(cls, model, steps: int, opts: DDIMOptions | None = None, grid=None) -> LoopSampler:
        opts = cls.check(model, steps, opts, grid)
        if grid is not None:  # the grid axis names the spacing
            opts = dataclasses.replace(opts, timestep_spacing=grid.name)
        pred = model.prediction().discrete()
        listing = DDIMScheduler(**pred.schedule.diffusers, timestep_spacing=opts.timestep_spacing, steps_offset=0)
        listing.set_timesteps(steps)
        timesteps = [int(t) for t in listing.timesteps]
        loop = functools.partial(ddim_sample, pred, timesteps=timesteps, alphas_cumprod=pred.schedule.alphas_cumprod,
                                 eta=opts.eta, clip_sample=opts.clip_sample)
        settings = {"update": "DDIM eq. 12 over the listed timesteps, alpha_bar = 1 after the last",
                    "timesteps_from": "DDIMScheduler.set_timesteps", **dataclasses.asdict(opts),
                    "schedule": pred.schedule.describe, **_grid_settings(opts.timestep_spacing, timesteps, pred.schedule)}
        label = f"ddim-{steps}" + (f"-eta{opts.eta:g}" if opts.eta else "")
        return LoopSampler(loop, steps=steps, nfe=steps, label=label, settings=settings)
