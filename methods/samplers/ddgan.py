"""DDGAN's sampler (Xiao et al. 2022): x_T ~ N(0, I); for t = T-1 .. 0 draw z, let the generator
propose x_0' and sample the exact posterior q(x_t | x_{t+1}, x_0') (no noise at t = 0). NFE = T.
It runs only on the DDGAN generator it was trained with: each T is its own checkpoint."""

from __future__ import annotations

import functools
from typing import Callable

import torch
from diffusers.utils.torch_utils import randn_tensor

from methods.base import LoopSampler, StepRange
from methods.registry import register_sampler
from methods.samplers.base import NoOptions, SamplerDef

Generator = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


def ddgan_sample(model: Generator, noise: torch.Tensor, *, coefs, nz: int, direct: bool,
                 generator: torch.Generator) -> torch.Tensor:
    """`model(x_{t+1}, t, z)` returns x_0' (or x_t' itself when `direct`); nz = 0 draws no z.
    Every random draw uses `generator`, so a call is deterministic given its seed."""
    x = noise
    T = len(coefs.post_std) - 1
    for t in reversed(range(T)):
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        z = randn_tensor((x.shape[0], nz), generator=generator, device=x.device, dtype=x.dtype) if nz else None
        out = model(x, tt, z)
        if direct:
            x = out
            continue
        eps = randn_tensor(x.shape, generator=generator, device=x.device, dtype=x.dtype) if t > 0 else 0 * x
        x = coefs.posterior_sample(out, x, tt, eps)
    return x


@register_sampler("ddgan")
class DDGANSampler(SamplerDef):
    grid_kinds = ()  # its own grid (uniform t, trained steps or the Karras levels it was trained on)
    Options = NoOptions
    kinds = ("sample",)
    times = ("trained",)
    default_model = "ddgan"
    stochastic = True
    summary = "DDGAN: T generator calls with posterior sampling; each T is its own trained generator"

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None) -> StepRange:
        return StepRange(model_cfg.T, model_cfg.T,
                         "DDGAN samples with the T it was trained with; each T is its own checkpoint")

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        return model_cfg.T

    @classmethod
    def steps_for_nfe(cls, budget: int, model_cls, model_cfg, opts, grid=None) -> int | None:
        return budget  # T = budget: a checkpoint of its own (checked when the grid is resolved)

    @classmethod
    def build(cls, model, steps: int, opts=None, grid=None) -> LoopSampler:
        cls.check(model, steps, opts)
        cfg = model.cfg
        loop = functools.partial(ddgan_sample, model.predict, coefs=model.coefs, nz=model.gen.nz,
                                 direct=cfg.parameterization == "direct")
        settings = {"T": cfg.T, "schedule": "vp_discretised", "beta_min": cfg.beta_min, "beta_max": cfg.beta_max,
                    "parameterization": cfg.parameterization, "use_z": cfg.use_z, "out_act": cfg.out_act,
                    "posterior_sampling": cfg.parameterization != "direct"}
        return LoopSampler(loop, steps=steps, nfe=steps, label=f"ddgan-T{steps}", settings=settings)
