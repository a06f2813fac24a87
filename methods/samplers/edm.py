"""EDM's samplers (Karras et al. 2022), line by line, on any model's sigma-space view (methods/sigma.py).

edm-heun   Algorithm 1: Euler from sigma_i to sigma_{i+1}, then the trapezoidal (Heun) correction unless
           sigma_{i+1} = 0. N steps on a grid ending in 0: 2N - 1 network calls (CIFAR-10: N = 18, 35 NFE).
edm-sde    Algorithm 2: before each step the noise level is raised from sigma_i to
           sigma_hat = (1 + gamma_i) sigma_i with fresh noise of variance sigma_hat^2 - sigma_i^2, where
           gamma_i = min(S_churn / N, sqrt(2) - 1) for sigma_i in [S_tmin, S_tmax] and 0 elsewhere, the noise
           scaled by S_noise; then the step of Algorithm 1 from sigma_hat. Same NFE as edm-heun.
Both default to EDM's grid (karras, rho 7, 0.002..80, then 0); any sigma grid of the axis applies.
`heun` on a sigma grid is Algorithm 1 as well; edm-heun is the same solver under EDM's name, so that a
table reads as the paper does.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from methods.registry import register_sampler
from methods.samplers.base import NoOptions
from methods.samplers.sigma_loop import SigmaGridSampler
from methods.sigma import heun_step


@register_sampler("edm-heun")
class EDMHeun(SigmaGridSampler):
    Options = NoOptions
    order = 2
    owns_final = True
    default_model = "edm"
    summary = "EDM Algorithm 1: Heun on sigma with an Euler last step to 0, 2N - 1 calls (by hand, EDM's grid)"

    @classmethod
    def nfe(cls, steps: int, opts, grid=None) -> int:
        return 2 * steps if grid is not None and grid.final == "none" else 2 * steps - 1

    @classmethod
    def settings(cls, opts) -> dict:
        return {"solver": "EDM Algorithm 1"}

    @classmethod
    def solve(cls, D, x, sigmas, opts, generator):
        for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
            x = heun_step(D, x, s, s_next)
        return x


@dataclasses.dataclass(frozen=True)
class EDMSDEOptions:
    S_churn: float = 40.0  # EDM's ImageNet-64 setting; 0 makes it edm-heun
    S_tmin: float = 0.05
    S_tmax: float = 50.0
    S_noise: float = 1.003


@register_sampler("edm-sde")
class EDMSDE(EDMHeun):
    Options = EDMSDEOptions
    stochastic = True
    summary = "EDM Algorithm 2: churned Heun (S_churn, S_tmin, S_tmax, S_noise; ImageNet-64 defaults), 2N - 1 calls"

    @classmethod
    def validate(cls, opts: EDMSDEOptions) -> None:
        if opts.S_churn < 0 or opts.S_noise <= 0 or not 0 <= opts.S_tmin <= opts.S_tmax:
            raise ValueError("edm-sde: need S_churn >= 0, S_noise > 0 and 0 <= S_tmin <= S_tmax, got"
                             f" {dataclasses.asdict(opts)}")

    @classmethod
    def settings(cls, opts) -> dict:
        return {"solver": "EDM Algorithm 2", **dataclasses.asdict(opts)}

    @classmethod
    def solve(cls, D, x, sigmas, opts, generator):
        steps = len(sigmas) - 1
        for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
            gamma = min(opts.S_churn / steps, math.sqrt(2) - 1) if opts.S_tmin <= s <= opts.S_tmax else 0.0
            s_hat = s * (1 + gamma)
            if gamma > 0:
                noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
                x = x + math.sqrt(s_hat**2 - s**2) * opts.S_noise * noise
            x = heun_step(D, x, s_hat, s_next)
        return x
