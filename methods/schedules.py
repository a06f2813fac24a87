"""Noise-schedule maths shared by the methods.

Notation (Ho et al. 2020): beta_t, alpha_t = 1 - beta_t, alpha_bar_t = prod_{s<=t} alpha_s,
and the Gaussian posterior q(x_{t-1} | x_t, x_0) = N(coef_x0 * x_0 + coef_xt * x_t, var).

VDM (Kingma et al. 2021) writes a variance-preserving schedule in continuous time
t in [0, 1] as gamma(t) = -logSNR(t), alpha_t^2 = sigmoid(-gamma_t), sigma_t^2 =
sigmoid(gamma_t). The gamma modules at the end of this file (fixed linear, learnable
scalar, learnable monotone network) are the only schedule code that holds parameters.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


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



def gaussian_eps_vp(z_t: torch.Tensor, gamma: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """The exact E[eps | z_t] for x ~ N(mean, diag(std^2)) and z_t = alpha_t x + sigma_t eps, from gamma_t.

    Same as `gaussian_eps` with alpha_bar = alpha_t^2, but sigma_t^2 = sigmoid(gamma) is taken
    directly so that it stays accurate where 1 - alpha_t^2 would cancel (gamma = -13.3)."""
    gamma = torch.as_tensor(gamma, dtype=z_t.dtype, device=z_t.device).reshape(-1, *([1] * (z_t.dim() - 1)))
    alpha2, sigma2 = torch.sigmoid(-gamma), torch.sigmoid(gamma)
    return sigma2.sqrt() * (z_t - alpha2.sqrt() * mean) / (alpha2 * std**2 + sigma2)


# --- VDM gamma(t) = -logSNR(t) modules: t of any shape -> gamma of the same shape -------------------

GAMMA_SCHEDULES = ("fixed_linear", "learned_linear", "learned_nnet")


class FixedLinearGamma(nn.Module):
    """gamma(t) = gamma_min + (gamma_max - gamma_min) t (the endpoints are buffers, not trained)."""

    def __init__(self, gamma_min: float, gamma_max: float):
        super().__init__()
        self.register_buffer("gamma_min", torch.tensor(float(gamma_min)))
        self.register_buffer("gamma_max", torch.tensor(float(gamma_max)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.gamma_min + (self.gamma_max - self.gamma_min) * t


class LearnedLinearGamma(nn.Module):
    """The learnable scalar schedule gamma(t) = b + |w| t, initialised at b = gamma_min, w = gamma_max - gamma_min."""

    def __init__(self, gamma_min: float, gamma_max: float):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(float(gamma_min)))
        self.w = nn.Parameter(torch.tensor(float(gamma_max - gamma_min)))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.b + self.w.abs() * t


class MonotoneLinear(nn.Linear):
    """A linear layer with weights |W| >= 0, so the output is non-decreasing in every input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight.abs(), self.bias)


class LearnedMonotoneGamma(nn.Module):
    """VDM's monotone network: gamma(t) = l1(t) + l3(phi(l2(t'))) / n_features, t' = 2t - 1,
    phi(u) = 2 (sigmoid(u) - 1/2), all weights non-negative. l1 starts as the linear schedule
    (weight gamma_max - gamma_min, bias gamma_min); l2, l3 start at N(0, 0.01^2) weights (the
    reference's initialiser), so the learned part starts near zero. Strictly increasing while
    l1's weight is non-zero."""

    def __init__(self, gamma_min: float, gamma_max: float, n_features: int = 1024):
        super().__init__()
        self.n_features = n_features
        self.l1 = MonotoneLinear(1, 1)
        self.l2 = MonotoneLinear(1, n_features)
        self.l3 = MonotoneLinear(n_features, 1, bias=False)
        with torch.no_grad():
            self.l1.weight.fill_(gamma_max - gamma_min)
            self.l1.bias.fill_(gamma_min)
            nn.init.normal_(self.l2.weight, std=0.01)
            nn.init.zeros_(self.l2.bias)
            nn.init.normal_(self.l3.weight, std=0.01)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        shape = t.shape
        t = t.reshape(-1, 1)
        h = self.l1(t)
        u = 2.0 * (torch.sigmoid(self.l2(2.0 * (t - 0.5))) - 0.5)
        return (h + self.l3(u) / self.n_features).reshape(shape)


def build_gamma(kind: str, gamma_min: float, gamma_max: float) -> nn.Module:
    """The gamma(t) module named `kind` (one of GAMMA_SCHEDULES)."""
    if kind == "fixed_linear":
        return FixedLinearGamma(gamma_min, gamma_max)
    if kind == "learned_linear":
        return LearnedLinearGamma(gamma_min, gamma_max)
    if kind == "learned_nnet":
        return LearnedMonotoneGamma(gamma_min, gamma_max)
    raise ValueError(f"unknown schedule {kind!r}; choose from: {', '.join(GAMMA_SCHEDULES)}")
