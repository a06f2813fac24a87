"""Flow matching / rectified flow with the linear path (Lipman et al. 2023; Liu et al. 2023), and
reflow: the k-rectified flow, trained on couplings drawn from the (k-1)-rectified flow.

Time runs from data to noise, as in diffusion (and diffusers' flow-matching schedulers); the
rectified-flow paper's X_0 is our noise and its X_1 our data.

code            paper
x_0, eps        a data sample and Gaussian noise (RF: X_1 and X_0)
x_t             (1 - t) x_0 + t eps, t in [0, 1]                         (the linear path)
u               eps - x_0 = dx_t / dt                                     (the target velocity)
v_theta(x, t)   the velocity network
loss            || v_theta(x_t, t) - (eps - x_0) ||^2
t_dist          uniform: t ~ U(0, 1); logit-normal: t = sigmoid(n), n ~ N(logit_mean, logit_std^2)
                (Esser et al. 2024)
sampling        dx/dt = v_theta(x, t) from t = 1 (noise) to t = 0 (data): samplers `flow` (Euler),
                heun, midpoint, dopri5, fm-euler (methods/samplers/flow.py)
reflow = k      (eps, x_0) are couplings (z, ODE_teacher(z)) of the teacher, the (k-1)-rectified flow
                with the same preset and network; reflow = 0 is 1-rectified flow on the data
couplings       how many couplings are drawn once, from a seed, and cached in the run folder

A reflow student starts from its teacher's EMA weights (`init_from_teacher`, as the rectified-flow
code fine-tunes the 1-rectified flow) and draws each batch of couplings uniformly with the
training RNG; the data batch the harness passes in is then unused.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from methods.base import Model, ParamGroup
from methods.nets import NetConfig, build_net
from methods.prediction import Prediction
from methods.registry import register_model
from methods.registry import get_sampler

T_DISTS = ("uniform", "logit-normal")
MAX_REFLOW = 3
COUPLINGS_FILE = "couplings.pt"


def draw_times(cfg, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Times in (0, 1) from cfg.t_dist: uniform, or sigmoid of N(cfg.logit_mean, cfg.logit_std^2)
    (flow matching's t; MeanFlow's two draws of (r, t))."""
    if cfg.t_dist == "uniform":
        return torch.rand(shape, device=device)
    return torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(shape, device=device))


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    lr: float = 2e-4
    t_dist: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    reflow: int = 0  # 0: 1-rectified flow on data; k: trained on couplings of the (k-1)-rectified flow
    couplings: int = 100_000  # (noise, sample) pairs drawn from the teacher
    coupling_sampler: str = "dopri5"  # the teacher's ODE solver (RF uses an adaptive RK45)
    coupling_steps: int = 100  # steps of a fixed-step coupling sampler (dopri5: ignored, adaptive)
    coupling_batch: int = 10_000  # couplings per teacher call; block b is seeded (seed, b)
    init_from_teacher: bool = True
    net: NetConfig = NetConfig()


@register_model("flow")
class Flow(Model):
    """A velocity network on the linear path; reflow > 0 makes it a k-rectified flow."""

    Config = FlowConfig
    ema_modules = ("net",)
    kind = "velocity"
    time = "continuous"
    native_sampler = "flow"
    key_params = ("reflow",)
    summary = "flow matching / rectified flow (linear path, velocity), reflow=k for the (k+1)-rectified flow"

    def __init__(self, cfg: FlowConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.net = build_net(cfg.net, self.data_shape, t_scale=1000.0)
        self.pairs: tuple[torch.Tensor, torch.Tensor] | None = None  # (eps, x_0) couplings, reflow only

    @classmethod
    def family_of(cls, key_params: dict) -> str:
        """A rectified flow after reflow (reflow >= 1) is trained to sample in a few straight steps."""
        return "few-step" if int(key_params.get("reflow") or 0) >= 1 else cls.family

    @classmethod
    def check_config(cls, cfg: FlowConfig) -> None:
        if cfg.t_dist not in T_DISTS:
            raise ValueError(f"unknown t_dist {cfg.t_dist!r}; choose from: {', '.join(T_DISTS)}")
        if not cfg.logit_std > 0:
            raise ValueError(f"logit_std must be > 0, got {cfg.logit_std}")
        if not 0 <= cfg.reflow <= MAX_REFLOW:
            raise ValueError(f"reflow={cfg.reflow} is out of range: use 0..{MAX_REFLOW}")
        if cfg.couplings < 1 or cfg.coupling_batch < 1 or cfg.coupling_steps < 1:
            raise ValueError("couplings, coupling_batch and coupling_steps must be >= 1")
        if not cfg.lr > 0:
            raise ValueError(f"lr must be > 0, got {cfg.lr}")
        sampler = get_sampler(cfg.coupling_sampler)
        reason = sampler.runs_on(cls)
        if reason:
            raise ValueError(f"coupling_sampler: {reason}")

    @classmethod
    def parents(cls, cfg: FlowConfig) -> dict[str, tuple[str, dict]]:
        if not cfg.reflow:
            return {}
        net = {f"model.net.{k}": v for k, v in dataclasses.asdict(cfg.net).items()}
        return {"teacher": ("flow", {"model.reflow": cfg.reflow - 1, **net})}

    def attach_parents(self, parents, *, run_dir, seed: int, log=print) -> None:
        teacher = parents["teacher"]
        if self.cfg.init_from_teacher:
            self.net.load_state_dict(teacher.net.state_dict())
        path = Path(run_dir) / COUPLINGS_FILE
        pairs = _read_couplings(path, self.cfg.couplings)
        if pairs is None:
            log(f"reflow: drawing {self.cfg.couplings} couplings from the teacher with {self.cfg.coupling_sampler}")
            pairs = draw_couplings(teacher, self.cfg, seed=seed)
            tmp = path.with_suffix(".tmp")
            torch.save({"eps": pairs[0], "x0": pairs[1]}, tmp)
            tmp.replace(path)
        self.pairs = pairs

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.net.parameters()), lr=self.cfg.lr)}

    def draw_t(self, n: int, device: torch.device) -> torch.Tensor:
        return draw_times(self.cfg, (n,), device)

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        if self.cfg.reflow:
            if self.pairs is None:
                raise RuntimeError("a reflow run trains on its teacher's couplings: train it with `bench train`,"
                                   " which trains and attaches the teacher first")
            idx = torch.randint(len(self.pairs[0]), (x0.shape[0],))
            eps, x0 = self.pairs[0][idx].to(x0.device), self.pairs[1][idx].to(x0.device)
        else:
            eps = torch.randn_like(x0)
        t = self.draw_t(x0.shape[0], x0.device)
        tb = t.reshape(-1, *([1] * (x0.dim() - 1)))
        x_t = (1 - tb) * x0 + tb * eps
        return {"loss": F.mse_loss(self.net(x_t, t), eps - x0)}

    def denoisers(self) -> list[torch.nn.Module]:
        return [self.net]

    def prediction(self) -> Prediction:
        return Prediction(self.net, "velocity", None)


@torch.no_grad()
def draw_couplings(teacher: Model, cfg: FlowConfig, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps, ODE_teacher(eps)) pairs on the CPU: block b of `coupling_batch` uses torch seed
    seed * 1000003 + b for its noise, so the couplings depend on the seed only."""

    sampler_cls = get_sampler(cfg.coupling_sampler)
    steps = 1 if sampler_cls.adaptive else cfg.coupling_steps
    sampler = sampler_cls.build(teacher.eval(), steps, None)
    device = next(teacher.parameters()).device
    noise, samples = [], []
    for b in range(math.ceil(cfg.couplings / cfg.coupling_batch)):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
        n = min(cfg.coupling_batch, cfg.couplings - b * cfg.coupling_batch)
        z = torch.randn(n, *teacher.data_shape, generator=gen)
        noise.append(z)
        samples.append(sampler(z.to(device), generator=gen).cpu())
    return torch.cat(noise), torch.cat(samples)


def _read_couplings(path: Path, n: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached couplings, or None when there are none (or they are unreadable: drawn again)."""
    if not path.exists():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        pairs = (d["eps"], d["x0"])
    except Exception:  # a cut-short or foreign file: the couplings are deterministic, draw them again
        return None
    return pairs if len(pairs[0]) == n == len(pairs[1]) else None
