"""MeanFlow (Geng, Deng, Bai, Kolter, He 2025): a network of the average velocity over an interval, trained
from the MeanFlow identity, sampled in one step. No teacher, no pretraining.

code            paper
z_t             (1 - t) x + t eps, t in [0, 1] (the flow's linear path; t = 1 is noise)
v               eps - x, the conditional velocity dz_t / dt
u(z, r, t)      the average velocity 1 / (t - r) int_r^t v(z_s, s) ds; u(z, t, t) is the velocity itself
identity        u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t)
d/dt u          v . grad_z u + partial_t u: the JVP of u_theta along the tangent (v, 0, 1) in (z, r, t)
                (torch.func.jvp), one forward pass with its tangent
target          u_tgt = sg(v - (t - r) d/dt u_theta)
loss            w ||u_theta - u_tgt||^2 with the adaptive weight w = sg(1 / (||delta||^2 + c)^p)
(r, t)          two logit-normal draws (mean -0.4, std 1.0; t_dist = "uniform": U(0, 1)), t the larger;
                r = t for a 1 - `ratio` share of the batch (the paper's best: 25% r != t)
sampling        one step: x = eps - u(eps, 0, 1); k steps: z_r = z_t - (t - r) u(z_t, r, t) on t_i = 1 - i / k

The times enter the sinusoidal embeddings unscaled (t in [0, 1], `t_scale` = 1), as the paper's networks
take them, and not scaled by 1000 as the DDPM-era embeddings do: du/dt differentiates the network through its
embedding, whose fastest frequencies (1000 rad per unit t) make the JVP target noisy. Measured on the toy
(4,000 steps, 1-step MeanFlow): t_scale 1000 covers 1 of 25 modes, t_scale 1 covers 16.

The network takes the second time through its condition: the toy MLP embeds t - r like t and adds the two
embeddings; the image UNet passes t - r as a timestep-embedded class label (UNet2DModel's
class_embed_type="timestep"), which diffusers adds to the time embedding, as the paper adds its two
embeddings. The JVP runs through both networks with torch.func; one diffusers block needed a workaround:
Attention (the UNet's mid-block) calls scaled_dot_product_attention, whose fused kernels have no forward-mode
derivative ("_scaled_dot_product_flash_attention_for_cpu does not support forward AD"), so the JVP runs under
PyTorch's math SDPA backend.
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from methods.base import Model, ParamGroup
from methods.flow import T_DISTS, draw_times
from methods.nets import NetConfig, build_net
from methods.prediction import Prediction
from methods.registry import register_model


@dataclasses.dataclass(frozen=True)
class MeanFlowConfig:
    lr: float = 1e-3
    ratio: float = 0.25  # share of the batch with r != t
    t_dist: str = "logit-normal"  # or "uniform": r, t from U(0, 1)
    logit_mean: float = -0.4
    logit_std: float = 1.0
    weight_p: float = 1.0  # adaptive weight power (0: plain squared error)
    weight_c: float = 1e-3
    t_scale: float = 1.0  # t and t - r are multiplied by this before the sinusoidal embedding (see below)
    net: NetConfig = NetConfig()


class AverageVelocity(torch.nn.Module):
    """u_theta(z, r, t) = net(z, t, t2 = t - r): one module, so the NFE hooks count one call per u."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(z, t, t2=t - r)


def meanflow_target(u_fn, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, v: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(u_theta(z, r, t), the stop-gradient target v - (t - r) du/dt) with du/dt by one JVP. Attention runs on
    PyTorch's math kernel here: the fused scaled_dot_product_attention kernels (flash on the CPU, flash and
    memory-efficient on CUDA) have no forward-mode derivative."""
    with sdpa_kernel(SDPBackend.MATH):
        u, dudt = torch.func.jvp(u_fn, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))
    dt = (t - r).reshape(-1, *([1] * (z.dim() - 1)))
    return u, (v - dt * dudt).detach()


@register_model("meanflow")
class MeanFlow(Model):
    """The average-velocity network of MeanFlow, trained from the MeanFlow identity."""

    Config = MeanFlowConfig
    ema_modules = ("u",)
    kind = "average-velocity"
    family = "few-step"
    time = "continuous"
    native_sampler = "meanflow"
    summary = "MeanFlow: average velocity u(z, r, t) from the MeanFlow identity (JVP target), one-step sampling"

    def __init__(self, cfg: MeanFlowConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.u = AverageVelocity(build_net(cfg.net, self.data_shape, t_scale=cfg.t_scale, two_times=True))

    @classmethod
    def check_config(cls, cfg: MeanFlowConfig) -> None:
        if cfg.t_dist not in T_DISTS:
            raise ValueError(f"meanflow: unknown model.t_dist {cfg.t_dist!r}; choose from: {', '.join(T_DISTS)}")
        if not 0 <= cfg.ratio <= 1:
            raise ValueError(f"meanflow: model.ratio (the share of r != t) must be in [0, 1], got {cfg.ratio}")
        if not cfg.logit_std > 0 or not cfg.lr > 0 or cfg.weight_p < 0 or not cfg.weight_c > 0:
            raise ValueError("meanflow: need logit_std > 0, lr > 0, weight_p >= 0 and weight_c > 0")

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.u.parameters()), lr=self.cfg.lr)}

    def draw_rt(self, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        a, b = draw_times(cfg, (2, n), device)
        t, r = torch.maximum(a, b), torch.minimum(a, b)
        same = torch.rand(n, device=device) >= cfg.ratio
        return torch.where(same, t, r), t

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        r, t = self.draw_rt(x0.shape[0], x0.device)
        eps = torch.randn_like(x0)
        tb = t.reshape(-1, *([1] * (x0.dim() - 1)))
        z = (1 - tb) * x0 + tb * eps
        u, target = meanflow_target(self.u, z, r, t, eps - x0)
        err = (u - target).flatten(1).pow(2).sum(1)
        w = (err.detach() + self.cfg.weight_c) ** -self.cfg.weight_p
        return {"loss": (w * err).mean() / x0[0].numel(), "mse": err.mean().detach() / x0[0].numel()}

    def denoisers(self) -> list[torch.nn.Module]:
        return [self.u]

    def prediction(self) -> Prediction:
        return Prediction(self.u, "average-velocity", None)
