"""The sigma-space view of any model: a denoiser D(x; sigma) and the sigmas where it is valid.

Karras et al. (2022) put every diffusion model on one footing: x_sigma = x_0 + sigma n (the variance
exploding form), the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma, and a solver that walks
a grid of sigmas down to 0. Solvers written on that view (methods/samplers/sigma_loop.py) compare on
the same ODE whatever the model predicts.

code          maths
sigma         the VE noise level; for a VP model sigma = sqrt((1 - abar) / abar) = exp(-logSNR / 2)
x             the VE state x_sigma; the VP state is x / sqrt(1 + sigma^2)
D(x, sigma)   E[x_0 | x_sigma = x], the denoiser (x0 prediction)

How each prediction kind becomes D (k-diffusion's DiscreteEpsDDPMDenoiser idea, one adapter per kind):
- eps, discrete schedule: t = the fractional timestep of sigma, log sigma interpolated linearly between the
  two integer timesteps around it (the inverse of the rule diffusers' Karras-sigma solvers and
  `DiscreteSchedule.alpha_bar` use); sigma outside the table is clamped to its ends, so the valid range is
  [sigma(t = 0), sigma(t = T - 1)]. D = x - sigma eps(x / sqrt(1 + sigma^2), t).
- x0: D = x0(x / sqrt(1 + sigma^2), t).  v: x0 = alpha x_vp - sigma_vp v, alpha = 1 / sqrt(1 + sigma^2).
- continuous schedule (VDM): gamma(t) = -logSNR(t) = 2 log sigma; t(sigma) by bisection on the increasing
  gamma; valid range [exp(gamma(0) / 2), exp(gamma(1) / 2)].
- velocity (flows, x_t = (1 - t) x_0 + t eps): t = sigma / (1 + sigma), x_t = x / (1 + sigma),
  D = x_t - t v(x_t, t).
A model may also define `denoiser()` itself: the exact-score oracles do, so their D is exact at every
sigma, not only on a training schedule's range.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import torch

from methods.prediction import ContinuousSchedule, DiscreteSchedule, Prediction

DenoiserFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, sigma per sample) -> x0


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclasses.dataclass(frozen=True)
class Denoiser:
    """D(x; sigma) with its valid sigma range. `t_of_sigma` / `sigma_of_t` map to the model's own time
    (for the `time-uniform` grid); `describe` is what rows record of how sigma reaches the network."""

    fn: DenoiserFn
    sigma_min: float
    sigma_max: float
    describe: dict[str, Any]
    t_of_sigma: Callable[[torch.Tensor], torch.Tensor] | None = None
    sigma_of_t: Callable[[torch.Tensor], torch.Tensor] | None = None
    t_range: tuple[float, float] | None = None
    decode: Callable[[torch.Tensor], torch.Tensor] = _identity

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
        return self.fn(x, s.expand(x.shape[0]) if s.numel() == 1 else s)


def _per_sample(s: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return s.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _discrete_sigmas(schedule: DiscreteSchedule) -> torch.Tensor:
    return ((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt()


def _x0_from(kind: str, out: torch.Tensor, x_vp: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The x0 estimate from a VP prediction of `kind` at VE level sigma (x_vp: the VP state)."""
    s = _per_sample(sigma, x_vp)
    alpha = 1 / (1 + s**2).sqrt()
    if kind == "eps":
        return (x_vp - s * alpha * out) / alpha
    if kind == "x0":
        return out
    return alpha * x_vp - s * alpha * out  # v = alpha eps - sigma_vp x0


def _vp_denoiser(pred: Prediction, t_of_sigma, lo: float, hi: float, describe: dict, **time) -> Denoiser:
    fn, kind = pred.fn, pred.kind

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x_vp = x / (1 + _per_sample(sigma, x) ** 2).sqrt()
        t = t_of_sigma(sigma)
        return _x0_from(kind, fn(x_vp, t.to(x.dtype) if t.dtype == torch.float64 else t), x_vp, sigma)

    return Denoiser(D, lo, hi, describe, t_of_sigma=t_of_sigma, decode=pred.decode, **time)


def _gamma_inverse(gamma: Callable[[torch.Tensor], torch.Tensor], g: torch.Tensor) -> torch.Tensor:
    """t with gamma(t) = g on [0, 1] for an increasing gamma (bisection, 60 halvings: exact in float32)."""
    lo, hi = torch.zeros_like(g), torch.ones_like(g)
    with torch.no_grad():
        for _ in range(60):
            mid = (lo + hi) / 2
            below = gamma(mid.float()).double().cpu() < g
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return (lo + hi) / 2


def denoiser_of(model: Any, own: bool = True) -> Denoiser:
    """The sigma-space view of a model: its own `denoiser()` when it has one (and `own`), else built from its
    Prediction (eps, x0, v or velocity, discrete or continuous). A one-line ValueError otherwise."""
    exact = getattr(model, "denoiser", None) if own else None
    view = exact() if callable(exact) else None
    if view is not None:
        return view
    pred = model.prediction()
    if pred.kind == "velocity":
        return velocity_denoiser(pred)
    if pred.kind not in ("eps", "x0", "v"):
        raise ValueError(f"{model.name} predicts {pred.kind}: it has no denoiser D(x; sigma), so sigma-space"
                         " solvers do not run on it")
    sched = pred.schedule
    if isinstance(sched, DiscreteSchedule):
        sig = _discrete_sigmas(sched)

        def t_of_sigma(s: torch.Tensor) -> torch.Tensor:
            return sched.timestep(s.cpu()).to(s.device)

        def sigma_of_t(t: torch.Tensor) -> torch.Tensor:
            abar = sched.alpha_bar(t.cpu())
            return ((1 - abar) / abar).sqrt()

        describe = {"view": f"{pred.kind} model on a discrete schedule of T = {sched.T}; t(sigma) interpolates"
                    " log sigma linearly between integer timesteps (clamped to the table)", **sched.describe}
        return _vp_denoiser(pred, t_of_sigma, float(sig[0]), float(sig[-1]), describe,
                            sigma_of_t=sigma_of_t, t_range=(0.0, float(sched.T - 1)))
    if isinstance(sched, ContinuousSchedule):
        with torch.no_grad():
            g0, g1 = (float(sched.gamma(torch.tensor([v])).double()) for v in (0.0, 1.0))

        def t_of_sigma(s: torch.Tensor) -> torch.Tensor:
            return _gamma_inverse(sched.gamma, 2 * torch.log(s.double().cpu())).to(s.device)

        def sigma_of_t(t: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return torch.exp(sched.gamma(t.float()).double() / 2)

        describe = {"view": f"{pred.kind} model in continuous time; t(sigma) inverts gamma(t) = 2 log sigma",
                    **sched.describe}
        return _vp_denoiser(pred, t_of_sigma, math.exp(g0 / 2), math.exp(g1 / 2), describe,
                            sigma_of_t=sigma_of_t, t_range=(0.0, 1.0))
    raise ValueError(f"{model.name} has no noise schedule that maps to sigma")


def velocity_denoiser(pred: Prediction, t_max: float = 1 - 1e-4) -> Denoiser:
    """A flow on x_t = (1 - t) x_0 + t eps as a denoiser: sigma = t / (1 - t); valid up to t_max."""
    fn = pred.fn

    def D(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = _per_sample(sigma, x)
        t = s / (1 + s)
        x_t = x / (1 + s)
        return x_t - t * fn(x_t, (sigma / (1 + sigma)).to(x.dtype))

    return Denoiser(D, 0.0, t_max / (1 - t_max), {"view": "velocity model, t = sigma / (1 + sigma)"},
                    t_of_sigma=lambda s: s / (1 + s), sigma_of_t=lambda t: t / (1 - t), t_range=(0.0, t_max),
                    decode=pred.decode)


def ode_derivative(D: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """dx/dsigma = (x - D(x; sigma)) / sigma, the probability-flow ODE in sigma (Karras et al. eq. 4)."""
    return (x - D(x, sigma)) / sigma


def heun_step(D: Denoiser, x: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    """One step of EDM's Algorithm 1 from s to s_next: Euler, then the trapezoidal correction unless s_next = 0."""
    d = ode_derivative(D, x, s)
    x_next = x + (s_next - s) * d
    if s_next > 0:
        x_next = x + (s_next - s) * 0.5 * (d + ode_derivative(D, x_next, s_next))
    return x_next
