"""What a sampler sees of a model: a prediction function of a declared kind over a noise schedule.

A trained model (or the exact-score oracle) exposes `prediction() -> Prediction`; every
registered sampler is a loop over that object only, never over a method's internals
(DDGAN's generator is the one model kind whose sampler is trained with it).

kind        what fn(x_t, t) returns
eps         the noise eps in x_t = alpha_t x_0 + sigma_t eps
x0          the clean sample x_0
v           v = alpha_t eps - sigma_t x_0 (Salimans & Ho 2022)
velocity    dx/dt of a flow (flow matching)
sample      a generator's proposal (DDGAN), only for the sampler trained with it
consistency F of a consistency model, called as F(c_in x, c_noise) on the Karras sigmas of a
            KarrasSchedule; its sampler applies the boundary condition f = c_skip x + c_out F
average-velocity  MeanFlow's u(z, r, t) = 1 / (t - r) int_r^t v(z_s, s) ds, called as fn(z, r, t)

Schedules
- DiscreteSchedule: alpha_bar_t = prod_{s <= t}(1 - beta_s) for integer t = 0..T-1 (t = 0 least
  noisy); `fn` takes the timestep index, possibly fractional (Karras-sigma solvers interpolate).
- ContinuousSchedule: gamma(t) = -logSNR(t) on t in [0, 1] (VDM); alpha_t^2 = sigmoid(-gamma_t).
  `discrete(n)` gives the same model on the grid t_i = (i + 1) / n, so that every diffusers
  scheduler (which works on a table of alpha_bar) can run on it; the network is still called at
  the continuous time of each chosen timestep.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

KINDS = ("eps", "x0", "v", "velocity", "sample", "consistency", "average-velocity")
GRID = 1000  # points of the discrete view of a continuous schedule

Fn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclasses.dataclass(frozen=True)
class DiscreteSchedule:
    """alpha_bar_t for t = 0..T-1. `diffusers` holds the scheduler arguments that rebuild exactly
    this table (num_train_timesteps and either the beta formula or trained_betas); `describe` is
    what results rows record of it."""

    alphas_cumprod: torch.Tensor  # float64, (T,)
    diffusers: dict[str, Any]
    describe: dict[str, Any]

    @property
    def T(self) -> int:
        return len(self.alphas_cumprod)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional timestep of noise level sigma = sqrt((1 - abar) / abar): the inverse of
        `alpha_bar`, clamped to 0..T-1 outside the table's sigmas."""
        log_sigma = 0.5 * torch.log((1 - self.alphas_cumprod) / self.alphas_cumprod).to(sigma.device)
        ls = torch.log(sigma.to(torch.float64)).clamp(log_sigma[0], log_sigma[-1])
        hi = torch.searchsorted(log_sigma, ls).clamp(1, self.T - 1)
        lo = hi - 1
        return lo + (ls - log_sigma[lo]) / (log_sigma[hi] - log_sigma[lo])

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """alpha_bar at (fractional) timesteps t, float64: log sigma interpolated linearly between
        integer timesteps, the inverse of diffusers' `_sigma_to_t` (sigma^2 = (1 - abar) / abar)."""
        t = t.to(torch.float64).clamp(0, self.T - 1)
        log_sigma = 0.5 * torch.log((1 - self.alphas_cumprod) / self.alphas_cumprod).to(t.device)
        lo = t.floor().long()
        hi = (lo + 1).clamp(max=self.T - 1)
        w = t - lo
        sigma2 = torch.exp(2 * ((1 - w) * log_sigma[lo] + w * log_sigma[hi]))
        return 1.0 / (1.0 + sigma2)


def linear_schedule(T: int, beta_start: float, beta_end: float) -> DiscreteSchedule:
    """DDPM's linear betas, as diffusers builds them (float32 linspace) so that a scheduler built from
    `diffusers` holds the same table as training did."""
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float32).double()
    kwargs = dict(num_train_timesteps=T, beta_schedule="linear", beta_start=beta_start, beta_end=beta_end)
    return DiscreteSchedule(torch.cumprod(1 - betas, 0), kwargs, dict(kwargs))


@dataclasses.dataclass(frozen=True)
class ContinuousSchedule:
    """gamma(t) = -logSNR(t), t in [0, 1], increasing (VDM)."""

    gamma: Callable[[torch.Tensor], torch.Tensor]
    describe: dict[str, Any]

    def discrete(self, n: int = GRID) -> DiscreteSchedule:
        t = torch.arange(1, n + 1, dtype=torch.float64) / n
        with torch.no_grad():
            abar = torch.sigmoid(-self.gamma(t.float()).double().cpu())
        betas = 1 - abar / torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        return DiscreteSchedule(abar, {"num_train_timesteps": n, "trained_betas": betas.float().tolist()},
                                {**self.describe, "discretised": f"alpha_bar from gamma(t) at t_i = (i + 1) / {n}"})


@dataclasses.dataclass(frozen=True)
class KarrasSchedule:
    """The variance-exploding noise levels of a consistency model (Karras et al. 2022; Song et al.
    2023): x_sigma = x_0 + sigma z for sigma in [sigma_min, sigma_max], discretised with rho."""

    sigma_min: float
    sigma_max: float
    sigma_data: float
    rho: float

    def sigmas(self, n: int) -> torch.Tensor:
        """sigma_1 = sigma_min < ... < sigma_n = sigma_max, float64."""
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        lo, hi = self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)
        out = (lo + ramp * (hi - lo)) ** self.rho
        out[0], out[-1] = self.sigma_min, self.sigma_max  # exact ends: f(x, sigma_1) = x must hold exactly
        return out

    @property
    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Prediction:
    """A model as samplers see it. `fn(x_t, t)`: t is a timestep index (discrete schedules) or a
    time in [0, 1] (continuous ones), a 0-d tensor or one value per sample. `decode` maps the
    sampler's last state to data (VDM: the decoder's mode); loops apply it once at the end."""

    fn: Fn
    kind: str
    schedule: DiscreteSchedule | ContinuousSchedule | KarrasSchedule | None
    decode: Callable[[torch.Tensor], torch.Tensor] = _identity

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown prediction kind {self.kind!r}; choose from: {', '.join(KINDS)}")

    def discrete(self, n: int = GRID) -> "Prediction":
        """The same model over a discrete schedule (itself when it has one)."""
        if not isinstance(self.schedule, ContinuousSchedule):
            return self
        fn = self.fn

        def on_grid(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            t = ((torch.as_tensor(idx, device=x.device).float() + 1) / n).clamp(0, 1)
            return fn(x, t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t)

        return dataclasses.replace(self, fn=on_grid, schedule=self.schedule.discrete(n))
