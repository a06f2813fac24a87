"""EDM (Karras, Aittala, Aila, Laine 2022; NVlabs/edm): the preconditioned denoiser trained on log-normal
noise levels. The base that ECT, sCM and diff-sampler's solvers build on.

code            paper (Table 1, "EDM" column)
sigma           the noise level of x = y + n, n ~ N(0, sigma^2 I) (variance exploding)
D(x, sigma)     c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))
c_skip          sigma_data^2 / (sigma^2 + sigma_data^2)
c_out           sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
c_in            1 / sqrt(sigma^2 + sigma_data^2)
c_noise         ln(sigma) / 4 (fed to the network's time embedding scaled by `t_scale` = 1000, the range of
                the integer timesteps the embedding was built for)
training        ln sigma ~ N(P_mean, P_std^2), P_mean = -1.2, P_std = 1.2;
                loss lambda(sigma) ||D(y + n, sigma) - y||^2, lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
sampling        any sigma-space solver on D (methods/samplers/sigma_loop.py); EDM's own Heun (Algorithm 1) and
                stochastic sampler (Algorithm 2) are `edm-heun` and `edm-sde` (methods/samplers/edm.py)

sigma_data is 0.5 for images in [-1, 1]; the toy preset sets the data's own per-coordinate std (2.83 for
gaussians25). EDM's non-leaking augmentation is left out: at CPU sizes the runs are far too short to
overfit, and it needs a conditioning input the diffusers UNet does not have.

For the samplers that walk a DDPM-style table (ddim is not among them; the diffusers solvers on a spacing)
the model also exposes an x0 prediction in continuous time: t in [0, 1] maps to log sigma linearly between
sigma_min and sigma_max, gamma(t) = -logSNR(t) = 2 log sigma(t).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from methods.base import Model, ParamGroup
from methods.nets import NetConfig, build_net
from methods.prediction import ContinuousSchedule, Prediction
from methods.registry import register_model
from methods.sigma import Denoiser, denoiser_of

T_SCALE = 1000.0


@dataclasses.dataclass(frozen=True)
class EDMConfig:
    lr: float = 2e-4
    sigma_data: float = 0.5
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_min: float = 0.002  # the range the sampler walks (and the continuous-time view spans)
    sigma_max: float = 80.0
    net: NetConfig = NetConfig()


class Preconditioned(torch.nn.Module):
    """D(x, sigma) = c_skip x + c_out F(c_in x, c_noise): the network with EDM's preconditioning, so that the
    NFE hooks count one call per denoiser evaluation."""

    def __init__(self, net: torch.nn.Module, sigma_data: float):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, device=x.device, dtype=torch.float32).reshape(-1)
        s = s.expand(x.shape[0]) if s.numel() == 1 else s
        sb = s.reshape(-1, *([1] * (x.dim() - 1)))
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sb**2 + sd2)
        c_out = sb * self.sigma_data / (sb**2 + sd2).sqrt()
        c_in = 1 / (sb**2 + sd2).sqrt()
        c_noise = s.log() / 4
        return c_skip * x + c_out * self.net(c_in * x, c_noise)


@register_model("edm")
class EDM(Model):
    """A preconditioned denoiser trained with EDM's loss; sampled in sigma space."""

    Config = EDMConfig
    ema_modules = ("D",)
    kind = "x0"
    time = "continuous"
    native_sampler = "edm-heun"
    summary = "EDM: preconditioned denoiser D = c_skip x + c_out F, log-normal sigma, lambda-weighted loss"

    def __init__(self, cfg: EDMConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.D = Preconditioned(build_net(cfg.net, self.data_shape, t_scale=T_SCALE), cfg.sigma_data)

    @classmethod
    def check_config(cls, cfg: EDMConfig) -> None:
        if not cfg.sigma_data > 0 or not cfg.P_std > 0 or not cfg.lr > 0:
            raise ValueError(f"edm: sigma_data, P_std and lr must be > 0, got {cfg.sigma_data}, {cfg.P_std}, {cfg.lr}")
        if not 0 < cfg.sigma_min < cfg.sigma_max:
            raise ValueError(f"edm: need 0 < sigma_min < sigma_max, got {cfg.sigma_min} and {cfg.sigma_max}")

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.D.parameters()), lr=self.cfg.lr)}

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        sigma = (cfg.P_mean + cfg.P_std * torch.randn(x0.shape[0], device=x0.device)).exp()
        sb = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
        weight = (sb**2 + cfg.sigma_data**2) / (sb * cfg.sigma_data) ** 2
        denoised = self.D(x0 + sb * torch.randn_like(x0), sigma)
        return {"loss": (weight * (denoised - x0) ** 2).mean()}

    def denoisers(self) -> list[torch.nn.Module]:
        return [self.D]

    def sigma_of_t(self, t: torch.Tensor) -> torch.Tensor:
        lo, hi = math.log(self.cfg.sigma_min), math.log(self.cfg.sigma_max)
        return torch.exp(lo + t.double() * (hi - lo))

    def denoiser(self) -> Denoiser:
        view = denoiser_of(self, own=False)
        return dataclasses.replace(view, fn=self.D, sigma_min=self.cfg.sigma_min, sigma_max=self.cfg.sigma_max,
                                   describe={"view": "EDM's preconditioned denoiser, c_noise = ln(sigma) / 4"})

    def prediction(self) -> Prediction:
        """x0 in continuous time for the solvers that walk a table (see the module docstring)."""
        lo, hi = math.log(self.cfg.sigma_min), math.log(self.cfg.sigma_max)

        def gamma(t: torch.Tensor) -> torch.Tensor:
            return 2 * (lo + t * (hi - lo))

        D = self.D

        def x0(x_vp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            sigma = torch.exp(gamma(torch.as_tensor(t, device=x_vp.device).float()) / 2).reshape(-1)
            sigma = sigma.expand(x_vp.shape[0]) if sigma.numel() == 1 else sigma
            return D(x_vp * (1 + sigma.reshape(-1, *([1] * (x_vp.dim() - 1))) ** 2).sqrt(), sigma)

        return Prediction(x0, "x0", ContinuousSchedule(gamma, {"schedule": "EDM log-linear sigma(t)",
                                                               "sigma_min": self.cfg.sigma_min,
                                                               "sigma_max": self.cfg.sigma_max}))
