"""Samplers against the exact denoiser of Gaussian data: no training, so any error is the sampler's.

For x_0 ~ N(mu, diag(s^2)) the optimal eps-prediction is known in closed form
(methods.schedules.gaussian_eps); a correct sampler driven by it must return
samples with the data's mean and standard deviation.
"""

from __future__ import annotations

import functools

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from methods.ddim import ddim_sample
from methods.ddpm import DDPMConfig, ddpm_sample, scheduler_kwargs
from methods.schedules import gaussian_eps

MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 0.2])
N = 20_000


def exact_eps(alphas_cumprod: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return gaussian_eps(x_t, alphas_cumprod[t.long()].expand(x_t.shape[0]), MU, STD)


def moments_match(x: torch.Tensor, tol_mean: float = 0.02, tol_std: float = 0.03) -> None:
    assert torch.allclose(x.mean(0), MU, atol=tol_mean), f"mean {x.mean(0)} != {MU}"
    assert torch.allclose(x.std(0) / STD, torch.ones(2), atol=tol_std), f"std {x.std(0)} != {STD}"


def noise() -> torch.Tensor:
    return torch.randn(N, 2, generator=torch.Generator().manual_seed(0))


def test_ddpm_ancestral_sampling_recovers_gaussian_data():
    sched = DDPMScheduler(**scheduler_kwargs(DDPMConfig(clip_sample=False)), variance_type="fixed_small")
    sched.set_timesteps(1000)
    eps = functools.partial(exact_eps, sched.alphas_cumprod)
    x = ddpm_sample(eps, noise(), scheduler=sched, generator=torch.Generator().manual_seed(1))
    moments_match(x)


def ddim(steps: int, *, spacing: str = "trailing", eta: float = 0.0, seed: int = 1) -> torch.Tensor:
    sched = DDIMScheduler(**scheduler_kwargs(DDPMConfig(clip_sample=False)), timestep_spacing=spacing,
                          set_alpha_to_one=True, steps_offset=0)
    sched.set_timesteps(steps)
    eps = functools.partial(exact_eps, sched.alphas_cumprod)
    return ddim_sample(eps, noise(), scheduler=sched, eta=eta, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace"])
def test_ddim_deterministic_sampling_recovers_gaussian_data(spacing):
    moments_match(ddim(1000, spacing=spacing))


def test_ddim_is_a_first_order_solver():
    """The std error of deterministic DDIM shrinks about 2x each time the step count doubles."""
    errors = [(ddim(s).std(0) / STD - 1).abs().max().item() for s in (25, 50, 100, 200)]
    for coarse, fine in zip(errors, errors[1:]):
        assert 1.6 < coarse / fine < 2.5, f"errors {errors} do not halve with doubled steps"


def test_ddim_with_eta_one_is_stochastic_and_still_exact():
    a, b = ddim(1000, eta=1.0, seed=1), ddim(1000, eta=1.0, seed=2)
    moments_match(a)
    assert not torch.allclose(a, b), "eta=1 must inject fresh noise"


def test_ddim_single_step_collapses_to_the_posterior_mean():
    """With one step from pure noise the exact sampler returns E[x_0 | x_T] ~ mu: the mean is right,
    the spread is gone. This is the behaviour the toy benchmark shows for ddim-1."""
    sched = DDIMScheduler(**scheduler_kwargs(DDPMConfig(clip_sample=False)), timestep_spacing="trailing",
                          set_alpha_to_one=True, steps_offset=0)
    sched.set_timesteps(1)
    eps = functools.partial(exact_eps, sched.alphas_cumprod)
    x = ddim_sample(eps, noise(), scheduler=sched, eta=0.0, generator=None)
    assert torch.allclose(x.mean(0), MU, atol=0.02)
    assert (x.std(0) < 0.1 * STD).all()
