"""DDPM (Ho, Jain, Abbeel 2020): eps-prediction with T = 1000 linear betas. The checkpoint every
discrete-time sampler runs on (the `ddpm` ancestral sampler, ddim, DPM-Solver++, UniPC, ...).

code            paper
T               T, the number of diffusion steps
betas           beta_t, linear from beta_start to beta_end
alpha_bar       \\bar{alpha}_t = prod_{s <= t} (1 - beta_s)
x_t             sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps          (q(x_t | x_0))
eps_hat         eps_theta(x_t, t)
loss            || eps - eps_theta(x_t, t) ||^2, t ~ U{0..T-1}              (L_simple)
prediction      kind eps over the discrete schedule alpha_bar (methods/prediction.py)
num_classes     K > 0: eps_theta(x_t, t, c), trained with c dropped to the null token with
                probability p_uncond, sampled with classifier-free guidance (methods/guidance.py)
"""

from __future__ import annotations

import dataclasses

import torch
from diffusers import DDPMScheduler

from methods.base import Model, ParamGroup
from methods.guidance import check_conditioning, drop_labels, guided_fn
from methods.nets import NetConfig, build_net
from methods.prediction import Prediction, linear_schedule
from methods.registry import register_model

MAX_T = 100_000


@dataclasses.dataclass(frozen=True)
class DDPMConfig:
    T: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    lr: float = 2e-4
    net: NetConfig = NetConfig()
    # K > 0: class-conditional (labels from the data), for classifier-free guidance
    num_classes: int = dataclasses.field(default=0, metadata={"id": "omit_default"})
    # label dropout of a conditional model (Ho & Salimans: 0.1 or 0.2)
    p_uncond: float = dataclasses.field(default=0.1, metadata={"id": "with:num_classes"})


@register_model("ddpm")
class DDPM(Model):
    """eps-prediction diffusion trained with L_simple; the checkpoint DDIM and other solvers sample."""

    Config = DDPMConfig
    ema_modules = ("net",)
    native_sampler = "ddpm"
    summary = "DDPM: eps-prediction network on T = 1000 linear betas (discrete time)"

    def __init__(self, cfg: DDPMConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.net = build_net(cfg.net, self.data_shape, num_classes=cfg.num_classes)
        self.schedule = linear_schedule(cfg.T, cfg.beta_start, cfg.beta_end)
        self.train_scheduler = DDPMScheduler(**self.schedule.diffusers)

    @classmethod
    def check_config(cls, cfg: DDPMConfig) -> None:
        if not 1 <= cfg.T <= MAX_T:
            raise ValueError(f"T={cfg.T} is out of range: use 1..{MAX_T}")
        if not 0 < cfg.beta_start <= cfg.beta_end < 1:
            raise ValueError(f"betas must satisfy 0 < beta_start <= beta_end < 1, got {cfg.beta_start}, {cfg.beta_end}")
        check_conditioning(cfg)

    @classmethod
    def num_timesteps(cls, cfg: DDPMConfig) -> int:
        return cfg.T

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.net.parameters()), lr=self.cfg.lr)}

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        t = torch.randint(0, self.cfg.T, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        x_t = self.train_scheduler.add_noise(x0, eps, t)
        if self.cfg.num_classes:
            eps_hat = self.net(x_t, t, drop_labels(y, p_uncond=self.cfg.p_uncond, num_classes=self.cfg.num_classes))
        else:
            eps_hat = self.net(x_t, t)
        return {"loss": torch.nn.functional.mse_loss(eps_hat, eps)}

    def denoisers(self) -> list[torch.nn.Module]:
        return [self.net]

    def prediction(self) -> Prediction:
        if self.cfg.num_classes:
            return Prediction(guided_fn(self.net, self.label_slot, self.cfg.num_classes), "eps", self.schedule)
        return Prediction(self.net, "eps", self.schedule)
