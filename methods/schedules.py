"""Noise-schedule maths shared by the methods (no networks, no state).

Notation (Ho et al. 2020): beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s,
and the Gaussian posterior q(x_{t-1} | x_t, x_0) = N(coef_x0 * x_0 + coef_xt * x_t, var).
"""

from __future__ import annotations

import dataclasses

import torch


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear schedule (float64)."""
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def vp_discretised_betas(T: int, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3) -> torch.Tensor:
    """DDGAN's T-step discretisation of the VP-SDE (Xiao et al. 2022), with beta_0 = 1e-8 prepended.

    t_k = k/T (1 - eps) + eps; log_mean(t) = -t^2 (beta_max - beta_min)/4 - t beta_min/2;
    alpha_bar_k = exp(2 log_mean(t_k)); beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}.
    Returns T + 1 values: index 0 is the tiny beta_0, indices 1..T the T steps.
    """
    t = torch.arange(T + 1, dtype=torch.float64) / T * (1.0 - eps) + eps
    log_mean = -0.25 * t**2 * (beta_max - beta_min) - 0.5 * t * beta_min
    alpha_bar = torch.exp(2.0 * log_mean)
    betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
    return torch.cat([torch.tensor([1e-8], dtype=torch.float64), betas])


def alpha_bars(betas: torch.Tensor) -> torch.Tensor:
    return torch.cumprod(1.0 - betas, dim=0)


@dataclasses.dataclass(frozen=True)
class Posterior:
    """Coefficients of q(x_{t-1} | x_t, x_0) for t = 1..len-1 (index t); index 0 is unused."""

    coef_x0: torch.Tensor
    coef_xt: torch.Tensor
    var: torch.Tensor


def posterior(betas: torch.Tensor) -> Posterior:
    """q(x_{t-1}|x_t,x_0): mean = beta_t sqrt(abar_{t-1})/(1-abar_t) x_0 + (1-abar_{t-1}) sqrt(alpha_t)/(1-abar_t) x_t,
    var = beta_t (1-abar_{t-1})/(1-abar_t), where abar_{-1} := 1 (the chain starts at x_0)."""
    betas = betas.double()
    abar = alpha_bars(betas)
    abar_prev = torch.cat([torch.ones(1, dtype=betas.dtype), abar[:-1]])
    coef_x0 = betas * abar_prev.sqrt() / (1.0 - abar)
    coef_xt = (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar)
    var = betas * (1.0 - abar_prev) / (1.0 - abar)
    return Posterior(coef_x0=coef_x0, coef_xt=coef_xt, var=var)


def gaussian_eps(x_t: torch.Tensor, alpha_bar: torch.Tensor | float, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The exact denoiser E[eps | x_t] for data x_0 ~ N(mean, diag(std^2)).

    x_t = sqrt(abar) x_0 + sqrt(1-abar) eps is Gaussian, so
    E[eps | x_t] = sqrt(1-abar) (x_t - sqrt(abar) mean) / (abar std^2 + 1 - abar).
    Used to test samplers without training anything.
    """
    abar = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device).reshape(-1, *([1] * (x_t.dim() - 1)))
    return (1 - abar).sqrt() * (x_t - abar.sqrt() * mean) / (abar * std**2 + 1 - abar)


def log_snr_to_alpha_sigma(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """VDM: gamma = -logSNR; alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma)."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()

