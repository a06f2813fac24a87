"""Consistency models (Song et al. 2023), by distillation (CD) from a trained diffusion model or
by consistency training (CT) from data alone, with improved consistency training's choices
(iCT, Song & Dhariwal 2023).

code              paper
sigma             noise level of x_sigma = x_0 + sigma z, z ~ N(0, I)   (variance exploding, EDM)
sigma_1..sigma_N  Karras discretisation of [sigma_min, sigma_max] with rho (sigma_1 = sigma_min)
c_skip, c_out     sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2),
                  sigma_data (sigma - sigma_min) / sqrt(sigma_data^2 + sigma^2)
c_in, c_noise     1 / sqrt(sigma^2 + sigma_data^2), 1000 * 0.25 log(sigma)  (the CM code's; diffusers'
                  CMStochasticIterativeScheduler uses the same)
f_theta(x, s)     c_skip(s) x + c_out(s) F_theta(c_in(s) x, c_noise(s)); f(x, sigma_min) = x exactly
N(k)              the discretisation at training step k: fixed N (CD), CT's
                  ceil(sqrt(k / K ((s1 + 1)^2 - s0^2) + s0^2) - 1) + 1, or iCT's
                  min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K / (log2(s1 / s0) + 1))
n                 index of the pair (sigma_n, sigma_{n+1}): uniform (CM) or iCT's discretised
                  log-normal, p(n) ~ erf((log sigma_{n+1} - P_mean) / (sqrt 2 P_std)) - erf(... sigma_n ...)
CD target         x_hat_n = one teacher ODE step from (x_{n+1}, sigma_{n+1}) to sigma_n (heun: EDM's
                  second-order step, 2 teacher calls; ddim: DDIM's deterministic update, which is
                  Euler in sigma, 1 call); x_{n+1} = x_0 + sigma_{n+1} z
CT target         x_n = x_0 + sigma_n z with the same z (the one-sample score estimate)
loss              lambda(sigma_n) d(f_theta(x_{n+1}, sigma_{n+1}), f_theta-(x_target, sigma_n))
lambda            uniform: 1; ict: 1 / (sigma_{n+1} - sigma_n)
d                 pseudo-huber: sqrt(||a - b||^2 + c^2) - c, c = 0.00054 sqrt(dim) (sigma_data / 0.5);
                  l2: mean squared difference
theta-            ema: an EMA of theta after every optimizer step, decay mu (constant, CD) or CT's
                  mu(k) = exp(s0 log mu_0 / N(k)) (ema-ct); stopgrad: theta itself without gradient (iCT)

"auto" options resolve by mode as the papers do: CD (distill) uses a fixed N = 18, uniform n,
uniform lambda and an EMA target with mu = 0.95; CT (train) uses iCT's curriculum, log-normal n,
lambda = 1 / (sigma_{n+1} - sigma_n) and the stop-gradient target. The teacher is a registered
eps model (ddpm by default) trained with the same preset, or the exact-score `oracle` on mixture
data; its run id is part of this run's id.
The eps teacher is called on the VP variable x / sqrt(1 + sigma^2) at the fractional timestep of
sigma; below its smallest sigma (DDPM: 0.01) it is called at its t = 0.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import torch

from methods.base import Model, ParamGroup
from methods.nets import NetConfig, build_net
from methods.prediction import KarrasSchedule, Prediction
from methods.registry import register_model
from methods.registry import get_model

MODES = ("distill", "train")
CURRICULA = ("auto", "fixed", "ct", "ict")
NOISES = ("auto", "uniform", "lognormal")
DISTANCES = ("pseudo-huber", "l2")
WEIGHTINGS = ("auto", "uniform", "ict")
TARGETS = ("auto", "ema", "ema-ct", "stopgrad")
TEACHER_SOLVERS = ("heun", "ddim")


@dataclasses.dataclass(frozen=True)
class CMConfig:
    mode: str = "distill"  # distill (CD, from a trained teacher run) | train (CT, from data alone)
    teacher: str = "ddpm"  # distill: the eps model whose run (same preset) is the teacher
    teacher_solver: str = "heun"  # distill: the teacher's one ODE step, heun | ddim
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5  # the data's standard deviation (0.5 for images in [-1, 1])
    rho: float = 7.0
    curriculum: str = "auto"  # auto | fixed | ct | ict
    N: int = 18  # fixed curriculum: discretisation points (CM's CIFAR-10 CD)
    s0: int = 10  # ct / ict: the curriculum's first N - 1 (ict) or N (ct)
    s1: int = 1280  # ct / ict: its last
    curriculum_steps: int = 400_000  # K: training steps over which the curriculum runs (then stays at s1)
    noise: str = "auto"  # auto | uniform | lognormal: how the index n is drawn
    p_mean: float = -1.1
    p_std: float = 2.0
    distance: str = "pseudo-huber"
    weighting: str = "auto"  # auto | uniform | ict
    target: str = "auto"  # auto | ema | ema-ct | stopgrad
    target_decay: float = 0.95  # ema: mu; ema-ct: mu_0
    lr: float = 1e-4
    net: NetConfig = NetConfig()


def resolved(cfg: CMConfig) -> dict[str, str]:
    """The "auto" options as this mode's paper sets them."""
    cd = cfg.mode == "distill"
    pick = {"curriculum": "fixed" if cd else "ict", "noise": "uniform" if cd else "lognormal",
            "weighting": "uniform" if cd else "ict", "target": "ema" if cd else "stopgrad"}
    return {k: (getattr(cfg, k) if getattr(cfg, k) != "auto" else v) for k, v in pick.items()}


def discretisation(cfg: CMConfig, step: int) -> int:
    """N(k): the number of Karras points at training step k."""
    kind = resolved(cfg)["curriculum"]
    if kind == "fixed":
        return cfg.N
    K, k = cfg.curriculum_steps, min(step, cfg.curriculum_steps)
    if kind == "ct":
        return math.ceil(math.sqrt(k / K * ((cfg.s1 + 1) ** 2 - cfg.s0 ** 2) + cfg.s0 ** 2) - 1) + 1
    k_prime = math.floor(K / (math.log2(cfg.s1 / cfg.s0) + 1))
    return min(cfg.s0 * 2 ** (k // max(k_prime, 1)), cfg.s1) + 1


def target_decay(cfg: CMConfig, step: int) -> float:
    """mu(k) of the target network theta- (0 for the stop-gradient target: theta- = theta)."""
    kind = resolved(cfg)["target"]
    if kind == "stopgrad":
        return 0.0
    if kind == "ema":
        return cfg.target_decay
    return math.exp(cfg.s0 * math.log(cfg.target_decay) / discretisation(cfg, step))


@register_model("cm")
class ConsistencyModel(Model):
    """f_theta(x, sigma) with the boundary condition built in; CD or CT by `mode`."""

    Config = CMConfig
    ema_modules = ("net",)
    kind = "consistency"
    family = "few-step"
    time = "continuous"
    native_sampler = "cm"
    key_params = ("mode",)
    summary = "consistency model: CD from a trained ddpm (mode=distill) or CT/iCT from data (mode=train)"

    def __init__(self, cfg: CMConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.net = build_net(cfg.net, self.data_shape)
        self.schedule = KarrasSchedule(cfg.sigma_min, cfg.sigma_max, cfg.sigma_data, cfg.rho)
        self.opts = resolved(cfg)
        if self.opts["target"] in ("ema", "ema-ct"):
            self.target = copy.deepcopy(self.net).requires_grad_(False)
            self.target_modules = {"target": "net"}
        self._teacher: list = []  # [teacher, its Prediction]: a list, so that the teacher is no submodule (never saved)

    @classmethod
    def check_config(cls, cfg: CMConfig) -> None:
        for field, allowed in (("mode", MODES), ("curriculum", CURRICULA), ("noise", NOISES),
                               ("distance", DISTANCES), ("weighting", WEIGHTINGS), ("target", TARGETS),
                               ("teacher_solver", TEACHER_SOLVERS)):
            if getattr(cfg, field) not in allowed:
                raise ValueError(f"unknown {field} {getattr(cfg, field)!r}; choose from: {', '.join(allowed)}")
        if not 0 < cfg.sigma_min < cfg.sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {cfg.sigma_min} and {cfg.sigma_max}")
        for field in ("sigma_data", "rho", "lr", "p_std"):
            if not getattr(cfg, field) > 0:
                raise ValueError(f"{field} must be > 0, got {getattr(cfg, field)}")
        if cfg.N < 2 or cfg.s0 < 1 or cfg.s1 < cfg.s0 or cfg.curriculum_steps < 1:
            raise ValueError("need N >= 2, 1 <= s0 <= s1 and curriculum_steps >= 1")
        if not 0 <= cfg.target_decay < 1 or (cfg.target == "ema-ct" and cfg.target_decay == 0):
            raise ValueError(f"target_decay must be in [0, 1) (ema-ct: (0, 1), it is mu_0 of exp(s0 log mu_0 / N)),"
                             f" got {cfg.target_decay}")
        if cfg.mode == "distill":
            teacher = get_model(cfg.teacher)
            if teacher.kind != "eps":
                raise ValueError(f"teacher {cfg.teacher!r} predicts {teacher.kind}, not eps; use ddpm, vdm or oracle")

    @classmethod
    def parents(cls, cfg: CMConfig) -> dict[str, tuple[str, dict]]:
        return {"teacher": (cfg.teacher, {})} if cfg.mode == "distill" else {}

    def attach_parents(self, parents, *, run_dir, seed: int, log=print) -> None:
        self.set_teacher(parents["teacher"])

    def set_teacher(self, teacher: Model) -> None:
        """The teacher, frozen in eval mode (an exact-score oracle works too)."""
        teacher.eval().requires_grad_(False)
        self._teacher[:] = [teacher, teacher.prediction().discrete()]

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.net.parameters()), lr=self.cfg.lr)}

    # --- the boundary-condition parameterisation ------------------------------------------------
    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s_min, s_data = self.cfg.sigma_min, self.cfg.sigma_data
        c_skip = s_data**2 / ((sigma - s_min) ** 2 + s_data**2)
        c_out = s_data * (sigma - s_min) / (s_data**2 + sigma**2).sqrt()
        c_in = 1 / (sigma**2 + s_data**2).sqrt()
        return c_skip, c_out, c_in

    def consistency(self, net: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """f(x, sigma) = c_skip x + c_out F(c_in x, c_noise), sigma one value per sample. The scalings
        are computed in float64, so that at sigma = sigma_min (a float64 sigma, as the Karras grid
        gives it) c_skip is exactly 1 and c_out exactly 0."""
        sigma = sigma.to(torch.float64)
        shape = (-1, *([1] * (x.dim() - 1)))
        c_skip, c_out, c_in = (c.reshape(shape).to(x.dtype) for c in self.scalings(sigma))
        return c_skip * x + c_out * net(c_in * x, c_noise(sigma).to(x.dtype))

    # --- training ---------------------------------------------------------------------------------
    def draw_index(self, sigmas: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
        """n pair indices in 0..N-2 (the pair sigma_i, sigma_{i+1})."""
        if self.opts["noise"] == "uniform":
            return torch.randint(len(sigmas) - 1, (n,), device=device)
        cdf = torch.erf((sigmas.log() - self.cfg.p_mean) / (math.sqrt(2) * self.cfg.p_std))
        return torch.multinomial((cdf[1:] - cdf[:-1]).float(), n, replacement=True).to(device)

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sq = (a - b).flatten(1).pow(2)
        if self.cfg.distance == "l2":
            return sq.mean(1)
        c = 0.00054 * math.sqrt(sq.shape[1]) * self.cfg.sigma_data / 0.5
        return (sq.sum(1) + c**2).sqrt() - c

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        N = discretisation(self.cfg, step)
        sigmas = self.schedule.sigmas(N).to(x0.device)
        i = self.draw_index(sigmas, x0.shape[0], x0.device)
        s_lo, s_hi = sigmas[i], sigmas[i + 1]
        z = torch.randn_like(x0)
        x_hi = x0 + _bcast(s_hi, x0).to(x0.dtype) * z
        with torch.no_grad():
            if self.cfg.mode == "distill":
                x_lo = self.teacher_step(x_hi, s_hi, s_lo)
            else:
                x_lo = x0 + _bcast(s_lo, x0).to(x0.dtype) * z
            target_net = self.target if hasattr(self, "target") else self.net
            target = self.consistency(target_net, x_lo, s_lo)
        online = self.consistency(self.net, x_hi, s_hi)
        weight = 1.0 / (s_hi - s_lo) if self.opts["weighting"] == "ict" else torch.ones_like(s_hi)
        loss = (weight.to(x0.dtype) * self.distance(online, target)).mean()
        return {"loss": loss, "N": torch.tensor(float(N))}

    def target_decay(self, step: int) -> float:
        return target_decay(self.cfg, step)

    # --- the teacher's ODE step (CD) -----------------------------------------------------------
    def teacher_denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """D(x, sigma) = x - sigma eps_hat of the eps teacher, on x = x_0 + sigma z."""
        if not self._teacher:
            raise RuntimeError("consistency distillation needs its teacher: train it with `bench train cm`,"
                               " which trains and attaches the teacher run first")
        teacher, pred = self._teacher
        state = next(itertools.chain(teacher.parameters(), teacher.buffers()), None)  # the oracle has buffers only
        if state is not None and state.device != x.device:
            teacher.to(x.device)
        s = _bcast(sigma, x).to(x.dtype)
        t = pred.schedule.timestep(sigma).to(x.device).float()
        return x - s * pred.fn(x / (1 + s**2).sqrt(), t).to(x.dtype)

    def teacher_step(self, x: torch.Tensor, s_from: torch.Tensor, s_to: torch.Tensor) -> torch.Tensor:
        h = _bcast(s_to - s_from, x).to(x.dtype)
        d = (x - self.teacher_denoise(x, s_from)) / _bcast(s_from, x).to(x.dtype)
        x_euler = x + h * d
        if self.cfg.teacher_solver == "ddim":
            return x_euler
        d2 = (x_euler - self.teacher_denoise(x_euler, s_to)) / _bcast(s_to, x).to(x.dtype)
        return x + h * (d + d2) / 2

    # --- sampling ---------------------------------------------------------------------------------
    def denoisers(self) -> list[torch.nn.Module]:
        return [self.net]

    def prediction(self) -> Prediction:
        return Prediction(self.net, "consistency", self.schedule)


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """The network's noise condition, 1000 * 0.25 log sigma, as diffusers' CM scheduler passes it."""
    return 1000 * 0.25 * torch.log(sigma + 1e-44)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.dim() - 1)))
