"""DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) through diffusers' DDPMScheduler:
x_{t-1} ~ N(mu_theta(x_t, t), beta~_t I) ("fixed_small" variance) at every training timestep."""

from __future__ import annotations

import dataclasses

from diffusers import DDPMScheduler

from methods.base import StepRange
from methods.registry import register_sampler
from methods.samplers.diffusers_loop import DiffusersSampler


@dataclasses.dataclass(frozen=True)
class DDPMOptions:
    clip_sample: bool = False  # clip x0_hat to [-1, 1] at each step (images in [-1, 1]; never for unbounded data)


@register_sampler("ddpm")
class DDPMAncestral(DiffusersSampler):
    Options = DDPMOptions
    scheduler_cls = DDPMScheduler
    times = ("discrete",)
    stochastic = True
    grid_kinds = ()  # every training timestep: no grid to choose
    summary = "DDPM ancestral sampling at every training timestep (diffusers DDPMScheduler, fixed_small variance)"

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None) -> StepRange:
        T = model_cls.num_timesteps(model_cfg)
        return StepRange(T, T, "ancestral sampling runs every training step; ddim and the solvers take fewer")

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        return model_cls.num_timesteps(model_cfg)

    @classmethod
    def scheduler_kwargs(cls, opts: DDPMOptions) -> dict:
        return dict(variance_type="fixed_small", clip_sample=opts.clip_sample, clip_sample_range=1.0,
                    thresholding=False, timestep_spacing="leading", steps_offset=0)
