"""DDPM (Ho, Jain, Abbeel 2020): eps-prediction with T = 1000 linear betas and
T-step ancestral sampling through diffusers' DDPMScheduler.

code            paper
T               T, the number of diffusion steps
betas           beta_t, linear from beta_start to beta_end
alpha_bar       \\bar{alpha}_t = prod_{s <= t} (1 - beta_s)
x_t             sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (q(x_t | x_0))
eps_hat         eps_theta(x_t, t)
loss            || eps - eps_theta(x_t, t) ||^2, t ~ U{0..T-1}              (L_simple)
sampler         x_{t-1} ~ N(mu_theta(x_t, t), beta~_t I)  ("fixed_small" variance)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
from diffusers import DDPMScheduler

from methods.base import LoopSampler, Method, ParamGroup, StepRange
from methods.nets import NetConfig, build_net
from methods.registry import register_method

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MAX_T = 100_000


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    clip_sample: bool = True  # clip x0_hat to [-1, 1] while sampling; off for unbounded (toy) data
    lr: float = 2e-4
    net: NetConfig = NetConfig()


def scheduler_kwargs(cfg: DDPMConfig) -> dict:
    """The noise schedule every sampler over a DDPM checkpoint shares (recorded in results)."""
    return dict(num_train_timesteps=cfg.T, beta_schedule="linear", beta_start=cfg.beta_start,
                beta_end=cfg.beta_end, clip_sample=cfg.clip_sample, prediction_type="epsilon")


def ddpm_sample(eps_model: EpsModel, noise: torch.Tensor, *, scheduler: DDPMScheduler,
                generator: torch.Generator) -> torch.Tensor:
    """Ancestral sampling, Algorithm 2 of the paper: one eps_model call per timestep."""
    x_t = noise
    for t in scheduler.timesteps:
        eps_hat = eps_model(x_t, t.to(x_t.device))
        x_t = scheduler.step(eps_hat, t, x_t, generator=generator).prev_sample
    return x_t


@register_method("ddpm")
class DDPM(Method):
    """eps-prediction diffusion trained with L_simple; the checkpoint DDIM and other solvers sample."""

    Config = DDPMConfig
    ema_modules = ("net",)
    summary = "DDPM: eps-prediction, T=1000 linear betas, T-step ancestral sampling"

    def __init__(self, cfg: DDPMConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.net = build_net(cfg.net, self.data_shape)
        self.train_scheduler = DDPMScheduler(**scheduler_kwargs(cfg))

    @classmethod
    def check_config(cls, cfg: DDPMConfig) -> None:
        if not 1 <= cfg.T <= MAX_T:
            raise ValueError(f"T={cfg.T} is out of range: use 1..{MAX_T}")
        if not 0 < cfg.beta_start <= cfg.beta_end < 1:
            raise ValueError(f"betas must satisfy 0 < beta_start <= beta_end < 1, got {cfg.beta_start}, {cfg.beta_end}")

    @classmethod
    def valid_steps(cls, cfg: DDPMConfig) -> StepRange:
        return StepRange(cfg.T, cfg.T, "ancestral sampling runs every training step; ddim samples fewer")

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.net.parameters()), lr=self.cfg.lr)}

    def forward(self, x0: torch.Tensor, *, phase: str, step: int) -> dict[str, torch.Tensor]:
        t = torch.randint(0, self.cfg.T, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.train_scheduler.add_noise(x0, eps, t)
        loss = torch.nn.functional.mse_loss(self.net(x_t, t), eps)
        return {"loss": loss}

    def denoisers(self) -> list[torch.nn.Module]:
        return [self.net]

    def eps_model(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x_t, t)

    def make_sampler(self, steps: int, opts: None = None) -> LoopSampler:
        error = self.valid_steps(self.cfg).error(steps)
        if error:
            raise ValueError(f"ddpm: {error}")
        scheduler = DDPMScheduler(**scheduler_kwargs(self.cfg), variance_type="fixed_small")
        scheduler.set_timesteps(steps)
        settings = {"scheduler": "DDPMScheduler", "variance_type": "fixed_small", **scheduler_kwargs(self.cfg)}
        loop = functools.partial(ddpm_sample, self.eps_model, scheduler=scheduler)
        return LoopSampler(loop, steps=steps, nfe=steps, label=f"ddpm-{steps}", settings=settings)
