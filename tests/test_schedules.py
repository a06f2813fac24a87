"""Schedule maths: the linear schedule the models use (methods/prediction.py) and the posterior
q(x_{t-1} | x_t, x_0) (methods/schedules.py, DDGAN's) agree with diffusers' DDPMScheduler."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from methods.prediction import linear_schedule
from methods.schedules import alpha_bars, posterior


def linear_betas(T: int) -> torch.Tensor:
    """The betas of DDPM's linear schedule as the models build it (linear_schedule's alpha_bar), float64."""
    abar = linear_schedule(T, 1e-4, 0.02).alphas_cumprod
    return 1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])


def test_the_models_linear_schedule_matches_ddpm():
    betas = linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    assert torch.allclose(alpha_bars(betas).float(), sched.alphas_cumprod, rtol=1e-5)
    assert torch.allclose(linear_schedule(1000, 1e-4, 0.02).alphas_cumprod.float(), sched.alphas_cumprod)


@pytest.mark.parametrize("t", [999, 500, 10, 1])
def test_posterior_matches_diffusers_step_with_x0_prediction(t):
    """diffusers with prediction_type='sample' draws x_{t-1} = coef_x0 x0 + coef_xt x_t + sqrt(var) z."""
    post = posterior(linear_betas(1000))
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="sample",
                          clip_sample=False, variance_type="fixed_small")
    sched.set_timesteps(1000)
    x0, xt = torch.randn(4, 2), torch.randn(4, 2)
    got = sched.step(x0, t, xt, generator=torch.Generator().manual_seed(7)).prev_sample
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(7))
    expected = post.coef_x0[t] * x0 + post.coef_xt[t] * xt + post.var[t].sqrt() * z
    # diffusers keeps alpha_bar in float32; near t = 0, 1 - alpha_bar loses about 4 digits
    assert torch.allclose(got, expected.float(), rtol=1e-3, atol=1e-3)


def test_posterior_at_the_first_step_returns_x0():
    post = posterior(linear_betas(10))
    assert post.var[0].item() == pytest.approx(0.0, abs=1e-12)
    assert post.coef_x0[0].item() == pytest.approx(1.0) and post.coef_xt[0].item() == pytest.approx(0.0)
