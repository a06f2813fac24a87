"""The exact oracles of an isotropic Gaussian mixture: models with no weights. `oracle` gives the
exact eps of DDPM's schedule, `flow-oracle` the exact velocity of the flow's linear path.

For x_0 ~ (1/K) sum_k N(mu_k, s^2 I) and x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, the noised
marginal is again a mixture, p_t(x) = (1/K) sum_k N(x; a mu_k, v I) with a = sqrt(abar_t) and
v = a^2 s^2 + 1 - abar_t, so the optimal eps-prediction has a closed form:

code        paper / maths
w_k(x)      posterior responsibility softmax_k(-||x - a mu_k||^2 / (2 v))
eps*(x, t)  E[eps | x_t = x] = -sqrt(1 - abar_t) grad log p_t(x)
            = sqrt(1 - abar_t) sum_k w_k(x) (x - a mu_k) / v

With `num_classes` = K (the mode as the class, K = the number of components) the oracle is
class-conditional: eps*(x, t, c) is the same formula over component c alone (w_k = 1[k = c]),
and the null class K gives the marginal's. Classifier-free guidance on it (methods/guidance.py)
is then exact: (1 + w) eps*(x, t, c) - w eps*(x, t) = -sqrt(1 - abar_t) grad log
p_t(x | c)^(1 + w) / p_t(x)^w, the score of the tilted density p_t(x | c) p_t(c | x)^w.

Every sampler run on it measures its own discretisation error with no network error. Its
schedule is DDPM's (T linear betas, the same defaults as the `ddpm` model), so its rows sit
beside the trained checkpoint's. Fractional timesteps (Karras-sigma solvers) get alpha_bar by
the log-sigma interpolation diffusers uses to place them (methods/prediction.py).

Under the linear path x_t = (1 - t) x_0 + t eps (methods/flow.py) the marginal is the mixture
(1/K) sum_k N(x; a mu_k, v I) with a = 1 - t and v = a^2 s^2 + t^2, and given x_t = x and the
component k, x_0 and eps have the Gaussian posterior means
    E[x_0 | x, k] = mu_k + a s^2 (x - a mu_k) / v,    E[eps | x, k] = t (x - a mu_k) / v,
so the exact velocity is
    u*(x, t) = E[eps - x_0 | x_t = x] = sum_k w_k(x) [(t - a s^2) (x - a mu_k) / v - mu_k].
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from methods.base import Model, ParamGroup
from methods.guidance import guided_fn
from methods.prediction import Prediction, linear_schedule
from methods.registry import register_model
from methods.sigma import Denoiser, denoiser_of


@dataclasses.dataclass(frozen=True)
class OracleConfig:
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    # K > 0: class-conditional (the class is the mixture component; K must be their number)
    num_classes: int = dataclasses.field(default=0, metadata={"id": "omit_default"})


class MixtureEps(nn.Module):
    """eps*(x_t, t) of an isotropic Gaussian mixture, in float64 (a module, so NFE hooks count it)."""

    def __init__(self, means: torch.Tensor, std: float, schedule):
        super().__init__()
        self.register_buffer("means", means.double())
        self.std = float(std)
        self.schedule = schedule

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """`y`: one component per sample (K: the null class, the whole mixture); None: the mixture."""
        abar = self.schedule.alpha_bar(torch.as_tensor(t).reshape(-1)).to(x.device)
        abar = abar.expand(x.shape[0]).reshape(-1, 1, 1) if abar.numel() == 1 else abar.reshape(-1, 1, 1)
        xd = x.double().reshape(x.shape[0], 1, -1)
        a = abar.sqrt()
        v = abar * self.std**2 + 1 - abar
        diff = xd - a * self.means.reshape(1, len(self.means), -1)  # (B, K, D)
        logits = -diff.pow(2).sum(-1, keepdim=True) / (2 * v)
        if y is not None:
            k = len(self.means)
            y = y.reshape(-1, 1).to(x.device)
            keep = (torch.arange(k, device=x.device).reshape(1, k) == y) | (y == k)
            logits = logits.masked_fill(~keep.unsqueeze(-1), float("-inf"))
        w = torch.softmax(logits, dim=1)
        return ((1 - abar).sqrt() * (w * diff).sum(1, keepdim=True) / v).reshape(x.shape).to(x.dtype)


class MixtureVelocity(nn.Module):
    """u*(x_t, t) of an isotropic Gaussian mixture under the linear path, in float64."""

    def __init__(self, means: torch.Tensor, std: float):
        super().__init__()
        self.register_buffer("means", means.double())
        self.std = float(std)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).double().reshape(-1)
        t = (t.expand(x.shape[0]) if t.numel() == 1 else t).reshape(-1, 1, 1)
        a = 1 - t
        v = a**2 * self.std**2 + t**2
        mu = self.means.reshape(1, len(self.means), -1)
        diff = x.double().reshape(x.shape[0], 1, -1) - a * mu  # (B, K, D)
        w = torch.softmax(-diff.pow(2).sum(-1, keepdim=True) / (2 * v), dim=1)
        u = (w * ((t - a * self.std**2) * diff / v - mu)).sum(1)
        return u.reshape(x.shape).to(x.dtype)


class MixtureDenoiser(nn.Module):
    """D(x; sigma) = E[x_0 | x_0 + sigma n = x] of an isotropic Gaussian mixture at any sigma > 0, float64:
    sum_k w_k [mu_k + s^2 / (s^2 + sigma^2) (x - mu_k)], w = softmax_k(-||x - mu_k||^2 / (2 (s^2 + sigma^2)))."""

    def __init__(self, means: torch.Tensor, std: float):
        super().__init__()
        self.register_buffer("means", means.double())
        self.std = float(std)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        var = (self.std**2 + sigma.double().to(x.device) ** 2).reshape(-1, 1, 1)
        mu = self.means.reshape(1, len(self.means), -1)
        diff = x.double().reshape(x.shape[0], 1, -1) - mu  # (B, K, D)
        w = torch.softmax(-diff.pow(2).sum(-1, keepdim=True) / (2 * var), dim=1)
        return (w * (mu + self.std**2 / var * diff)).sum(1).reshape(x.shape).to(x.dtype)


class MixtureModel(Model):
    """What both oracles share: built from the data's mixture, nothing to train."""

    trainable = False
    needs_mixture = True
    family = "exact"

    @classmethod
    def from_data(cls, cfg, data):
        """The oracle of `data.mixture` (means (K, D), std): any isotropic Gaussian mixture dataset."""
        mixture = getattr(data, "mixture", None)
        if mixture is None:
            raise ValueError(f"the {cls.name} needs isotropic Gaussian mixture data; {getattr(data, 'name', 'this data')}"
                             " has no closed-form score")
        k = cls.num_classes(cfg)
        if k and k != len(mixture.means):
            raise ValueError(f"model.num_classes={k}, but {getattr(data, 'name', 'the data')} has {len(mixture.means)}"
                             f" mixture components (its classes); set model.num_classes={len(mixture.means)}")
        return cls(cfg, tuple(data.shape), means=mixture.means, std=mixture.std)

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup([], lr=0.0)}

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        raise RuntimeError(f"the {self.name} is exact: there is nothing to train")


@dataclasses.dataclass(frozen=True)
class FlowOracleConfig:
    """No options: the linear path has no schedule to choose."""


@register_model("flow-oracle")
class FlowOracle(MixtureModel):
    """No training: the exact velocity of the data's Gaussian mixture under the linear path."""

    Config = FlowOracleConfig
    kind = "velocity"
    time = "continuous"
    native_sampler = "flow"
    summary = "exact-velocity oracle of an isotropic Gaussian mixture under the flow's linear path (no weights)"

    def __init__(self, cfg: FlowOracleConfig, data_shape: tuple[int, ...], *, means: torch.Tensor | None = None,
                 std: float = 1.0):
        super().__init__(cfg, data_shape)
        means = torch.zeros(1, *self.data_shape) if means is None else means
        self.velocity = MixtureVelocity(means.reshape(len(means), -1), std)

    def denoisers(self) -> list[nn.Module]:
        return [self.velocity]

    def prediction(self) -> Prediction:
        return Prediction(self.velocity, "velocity", None)


@register_model("oracle")
class Oracle(MixtureModel):
    """No training: the exact eps of the data's Gaussian mixture, on DDPM's discrete schedule."""

    Config = OracleConfig
    native_sampler = "ddim"
    summary = "exact-score oracle of an isotropic Gaussian mixture (no weights, no training) on DDPM's schedule"

    def __init__(self, cfg: OracleConfig, data_shape: tuple[int, ...], *, means: torch.Tensor | None = None,
                 std: float = 1.0):
        super().__init__(cfg, data_shape)
        self.schedule = linear_schedule(cfg.T, cfg.beta_start, cfg.beta_end)
        means = torch.zeros(1, *self.data_shape) if means is None else means
        self.eps = MixtureEps(means.reshape(len(means), -1), std, self.schedule)
        self.exact_d = MixtureDenoiser(means.reshape(len(means), -1), std)

    @classmethod
    def check_config(cls, cfg: OracleConfig) -> None:
        if not 0 < cfg.beta_start <= cfg.beta_end < 1 or cfg.T < 1:
            raise ValueError(f"oracle schedule needs T >= 1 and 0 < beta_start <= beta_end < 1, got {cfg}")

    @classmethod
    def num_timesteps(cls, cfg: OracleConfig) -> int:
        return cfg.T

    def denoisers(self) -> list[nn.Module]:
        return [self.eps, self.exact_d]

    def denoiser(self) -> Denoiser | None:
        """The exact D(x; sigma) at every sigma > 0, not only on DDPM's [sigma(0), sigma(T - 1)], with DDPM's
        time for the time-uniform grid. None for the class-conditional oracle: its sigma view goes through
        its guided eps (methods/sigma.py)."""
        if self.cfg.num_classes:
            return None
        view = denoiser_of(self, own=False)
        return dataclasses.replace(view, fn=self.exact_d, sigma_min=0.0, sigma_max=math.inf,
                                   describe={"view": "exact denoiser of the Gaussian mixture at every sigma > 0"})

    def prediction(self) -> Prediction:
        if self.cfg.num_classes:
            return Prediction(guided_fn(self.eps, self.label_slot, self.cfg.num_classes), "eps", self.schedule)
        return Prediction(self.eps, "eps", self.schedule)
