"""VDM (Kingma, Salimans, Poole, Ho 2021): a diffusion model trained on its variational
bound, with a learned noise schedule, in continuous time. Its own ancestral sampler is the
`vdm` sampler (methods/samplers/vdm.py); the diffusers solvers run on it through the discrete
view of gamma(t) (methods/prediction.py).

code              paper
gamma(t)          gamma_eta(t) = -logSNR(t), monotone in t (methods/schedules.py: fixed_linear,
                  learned_linear b + |w| t, learned_nnet the monotone network)
alpha_t, sigma_t  alpha_t^2 = sigmoid(-gamma_t), sigma_t^2 = sigmoid(gamma_t)
z_t               alpha_t x + sigma_t eps                                     (q(z_t | x))
eps_hat           eps_theta(z_t; gamma_t), the network conditioned on (gamma_t - gamma_min) /
                  (gamma_max - gamma_min) * 1000 (the reference's rescaled time embedding)
recon             -log p(x | z_0): images: the discretised decoder over 256 levels (a softmax of
                  Gaussian log-densities around z_0 / alpha_0, as the reference code);
                  2-D data: the Gaussian decoder N(x; z_0 / alpha_0, sigma_0^2 / alpha_0^2)
prior             KL(q(z_1 | x) || N(0, I)), exact at the data's own scale: the prior assumes unit
                  scale, and data that is not (the toy's raw coordinates, modes at -4..4, E[x^2] = 8
                  per coordinate) pays for it in this term, 0.5 alpha_1^2 E[x^2] nats per dimension
                  beyond the unit-scale KL (0.027 nats at gamma_1 = 5), which the learned gamma_1
                  can lower; nothing is rescaled, so the bound stays a bound on the data as given
diffusion         continuous: 0.5 gamma'(t) ||eps - eps_hat||^2 (gamma' by autograd);
                  discrete (loss_T = T > 0): 0.5 T expm1(gamma_t - gamma_s) ||eps - eps_hat||^2,
                  t = ceil(t T) / T, s = t - 1/T
loss              (recon + prior + diffusion) / (D ln 2): bits per dimension. For 8-bit images this
                  bounds -log2 P(x) of the discrete data; for continuous 2-D data it bounds the
                  negative log-density (a differential quantity, may be negative).
t                 antithetic: t_i = (u + i / B) mod 1, u ~ U[0, 1)
num_classes       K > 0: eps_theta(z_t; gamma_t, c) with c dropped to the null token K with probability
                  p_uncond in training (methods/guidance.py); the bound (loss, bpd) is then that of
                  the training labels after dropout, and bits/dim is scored with the null class: a
                  bound on log p(x) of the unconditional half, comparable with unconditional VDMs
prediction        kind eps, fn(z_t, t) = eps_theta(z_t; gamma(t)), continuous schedule gamma; decode:
                  x = the decoder's mode (images: the nearest of the 256 levels to z_0 / alpha_0)
                  or mean (2-D data: z_0 / alpha_0)

As the reference score network, image inputs get Fourier features sin/cos(2^n 2 pi z), n in
fourier_exponents, appended per channel, and the network's output is added to z_t
(eps_hat = net(...) + z_t). The 2-D MLP sees z_t alone and predicts eps directly, as the
reference's 2-D example does (Fourier features resolve 8-bit levels, which 2-D data lack).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from diffusers.utils.torch_utils import randn_tensor

from methods.base import Model, ParamGroup
from methods.guidance import check_conditioning, drop_labels, guided_fn
from methods.nets import NetConfig, build_net
from methods.prediction import ContinuousSchedule, Prediction
from methods.registry import register_model
from methods.schedules import GAMMA_SCHEDULES, build_gamma, log_snr_to_alpha_sigma

LEVELS = 256  # 8-bit data: x = 2 k / 255 - 1, k = 0..255
DECODER_WINDOW_STD = 12.0  # levels beyond this many decoder stds of z_0 / alpha_0 are < 1e-31 of the nearest


@dataclasses.dataclass(frozen=True)
class VDMConfig:
    schedule: str = "learned_linear"  # fixed_linear | learned_linear (the reference's CIFAR-10 choice) | learned_nnet
    gamma_min: float = -13.3  # gamma(0) (initial value for learned schedules)
    gamma_max: float = 5.0  # gamma(1) (initial value for learned schedules)
    loss_T: int = 0  # 0: continuous-time diffusion loss; T > 0: the discrete-time loss with T steps
    antithetic: bool = True  # antithetic time sampling
    fourier_exponents: tuple[int, ...] = (6, 7)  # images: sin/cos(2^n 2 pi z) features; () disables
    lr: float = 2e-4
    weight_decay: float = 0.01
    net: NetConfig = NetConfig()
    # K > 0: class-conditional eps_theta(z_t; gamma_t, c), for classifier-free guidance
    num_classes: int = dataclasses.field(default=0, metadata={"id": "omit_default"})
    p_uncond: float = dataclasses.field(default=0.1, metadata={"id": "with:num_classes"})  # label dropout


def sample_times(n: int, *, antithetic: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """n times in [0, 1) (on the CPU): antithetic (u + i/n) mod 1, or i.i.d. uniform."""
    if antithetic:
        u = torch.rand((), generator=generator)
        return torch.remainder(u + torch.arange(n) / n, 1.0)
    return torch.rand(n, generator=generator)


def fourier_features(z: torch.Tensor, exponents: tuple[int, ...]) -> torch.Tensor:
    """sin and cos of 2^n 2 pi z for each n and channel: (B, C, H, W) -> (B, 2 len(exponents) C, H, W)."""
    w = 2.0 ** torch.tensor(exponents, dtype=z.dtype, device=z.device) * 2 * math.pi
    h = (z.unsqueeze(1) * w.view(1, -1, *([1] * (z.dim() - 1)))).flatten(1, 2)
    return torch.cat([h.sin(), h.cos()], dim=1)


def prior_kl(x: torch.Tensor, gamma_1: torch.Tensor) -> torch.Tensor:
    """KL(q(z_1 | x) || N(0, I)) per sample, nats: 0.5 sum(alpha_1^2 x^2 + sigma_1^2 - log sigma_1^2 - 1)."""
    kl = 0.5 * (torch.sigmoid(-gamma_1) * x**2 + torch.sigmoid(gamma_1) - torch.nn.functional.logsigmoid(gamma_1) - 1)
    return kl.flatten(1).sum(1)


def discretised_log_prob(x: torch.Tensor, z0_rescaled: torch.Tensor, gamma_0: torch.Tensor) -> torch.Tensor:
    """log p(x | z_0) per sample for 8-bit x in [-1, 1]: per dimension a softmax over the 256 levels
    v_k of -0.5 (z_0 / alpha_0 - v_k)^2 / exp(gamma_0) (the reference's decoder).

    The normaliser sums over the levels within DECODER_WINDOW_STD decoder standard deviations of
    z_0 / alpha_0 (all 256 once that window spans them): every level left out weighs less than
    exp(-DECODER_WINDOW_STD^2 / 2) = 1e-31 times the nearest one, so the result is the full
    softmax to float precision, at a few levels per pixel instead of 256 while gamma_0 is low."""
    spacing = 2.0 / (LEVELS - 1)
    inv_var = torch.exp(-gamma_0)
    k_x = torch.round((x + 1) / spacing).clamp(0, LEVELS - 1)
    logit_x = -0.5 * inv_var * (z0_rescaled - (k_x * spacing - 1)) ** 2
    half = math.ceil(DECODER_WINDOW_STD * math.exp(0.5 * float(gamma_0.detach())) / spacing + 0.5)
    if 2 * half + 1 >= LEVELS:
        k = torch.arange(LEVELS, device=x.device, dtype=z0_rescaled.dtype)
        valid = None
    else:
        k_z = torch.round((z0_rescaled.detach() + 1) / spacing).clamp(0, LEVELS - 1)
        k = k_z.unsqueeze(-1) + torch.arange(-half, half + 1, device=x.device, dtype=z0_rescaled.dtype)
        valid = (k >= 0) & (k <= LEVELS - 1)
    logits = -0.5 * inv_var * (z0_rescaled.unsqueeze(-1) - (k * spacing - 1)) ** 2
    if valid is not None:
        logits = logits.masked_fill(~valid, -math.inf)
    return (logit_x - torch.logsumexp(logits, dim=-1)).flatten(1).sum(1)


def decoder_mode(z0_rescaled: torch.Tensor) -> torch.Tensor:
    """The most likely level of the discretised decoder: the level nearest to z_0 / alpha_0."""
    k = torch.round((z0_rescaled + 1) * (LEVELS - 1) / 2).clamp(0, LEVELS - 1)
    return k * 2 / (LEVELS - 1) - 1


@register_model("vdm")
class VDM(Model):
    """Variational diffusion model: learned gamma(t), continuous-time VLB in bits/dim, any-step sampler."""

    Config = VDMConfig
    ema_modules = ("net", "gamma")
    time = "continuous"
    native_sampler = "vdm"
    summary = "VDM: learned noise schedule gamma(t), continuous-time VLB (bits/dim); eps-prediction"

    def __init__(self, cfg: VDMConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.check_config(cfg)
        self.images = len(self.data_shape) == 3
        self.fourier = cfg.fourier_exponents if self.images else ()
        extra = 2 * len(self.fourier) * self.data_shape[0] if self.fourier else 0
        self.net = build_net(cfg.net, self.data_shape, in_extra=extra, t_scale=1000.0, num_classes=cfg.num_classes)
        self.gamma = build_gamma(cfg.schedule, cfg.gamma_min, cfg.gamma_max)

    @classmethod
    def check_config(cls, cfg: VDMConfig) -> None:
        if cfg.schedule not in GAMMA_SCHEDULES:
            raise ValueError(f"unknown schedule {cfg.schedule!r}; choose from: {', '.join(GAMMA_SCHEDULES)}")
        if not cfg.gamma_min < cfg.gamma_max:
            raise ValueError(f"gamma_min={cfg.gamma_min} must be below gamma_max={cfg.gamma_max}")
        if cfg.loss_T < 0:
            raise ValueError(f"loss_T={cfg.loss_T} must be >= 0 (0: continuous time)")
        check_conditioning(cfg)

    def param_groups(self) -> dict[str, ParamGroup]:
        return {"model": ParamGroup(list(self.parameters()), lr=self.cfg.lr, betas=(0.9, 0.99),
                                    weight_decay=self.cfg.weight_decay)}

    def denoisers(self) -> list[torch.nn.Module]:
        return [self.net]

    # --- the network and the three terms of the bound (per sample, nats) ---------------------------
    def eps_model(self, z_t: torch.Tensor, gamma_t: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        """eps_theta(z_t; gamma_t), or eps_theta(z_t; gamma_t, c) for a conditional model (c None: the null token)."""
        cond = (gamma_t - self.cfg.gamma_min) / (self.cfg.gamma_max - self.cfg.gamma_min)
        h = torch.cat([z_t, fourier_features(z_t, self.fourier)], dim=1) if self.fourier else z_t
        out = self.net(h, cond, c) if self.cfg.num_classes else self.net(h, cond)
        return out + z_t if self.images else out

    def _gamma_at(self, value: float, like: torch.Tensor) -> torch.Tensor:
        return self.gamma(torch.full((1,), value, device=like.device, dtype=like.dtype))[0]

    def recon_loss(self, x: torch.Tensor, eps_0: torch.Tensor) -> torch.Tensor:
        """-log p(x | z_0), z_0 ~ q(z_0 | x); the Gaussian decoder's term is taken in expectation."""
        g_0 = self._gamma_at(0.0, x)
        if self.images:
            return -discretised_log_prob(x, x + torch.exp(0.5 * g_0) * eps_0, g_0)
        dims = x[0].numel()
        return (0.5 * dims * (math.log(2 * math.pi) + g_0 + 1.0)).expand(x.shape[0])

    def diffusion_loss(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor,
                       c: torch.Tensor | None = None) -> torch.Tensor:
        """The diffusion term at times t (B,) with noise eps: continuous (loss_T = 0) or discrete."""
        T = self.cfg.loss_T
        keep_graph = torch.is_grad_enabled()
        if T > 0:
            t = torch.ceil(t * T).clamp(min=1) / T
        with torch.enable_grad():
            t = t.detach().requires_grad_(T == 0)
            g_t = self.gamma(t)
            if T == 0:
                (dg_t,) = torch.autograd.grad(g_t.sum(), t, create_graph=keep_graph)
        if not keep_graph:
            g_t = g_t.detach()
        view = (-1, *([1] * (x.dim() - 1)))
        alpha_t, sigma_t = log_snr_to_alpha_sigma(g_t)
        z_t = alpha_t.view(view) * x + sigma_t.view(view) * eps
        eps_hat = self.eps_model(z_t, g_t) if c is None else self.eps_model(z_t, g_t, c)
        mse = (eps - eps_hat).flatten(1).pow(2).sum(1)
        if T == 0:
            return 0.5 * dg_t * mse
        return 0.5 * T * torch.expm1(g_t - self.gamma(t - 1.0 / T)) * mse

    def vlb_terms(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, eps_0: torch.Tensor,
                  c: torch.Tensor | None = None) -> dict:
        """recon, prior and diffusion terms of the bound, per sample, in nats (given class c, if any)."""
        return {"recon": self.recon_loss(x, eps_0), "prior": prior_kl(x, self._gamma_at(1.0, x)),
                "diffusion": self.diffusion_loss(x, t, eps, c)}

    def _to_bits(self, terms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scale = 1.0 / (math.prod(self.data_shape) * math.log(2.0))
        return {k: v * scale for k, v in terms.items()}

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        t = sample_times(x0.shape[0], antithetic=self.cfg.antithetic).to(x0.device, x0.dtype)
        c = drop_labels(y, p_uncond=self.cfg.p_uncond, num_classes=self.cfg.num_classes) if self.cfg.num_classes else None
        terms = self._to_bits(self.vlb_terms(x0, t, torch.randn_like(x0), torch.randn_like(x0), c))
        out = {k: v.mean() for k, v in terms.items()}
        return {"loss": sum(out.values()), **out, "gamma_0": self._gamma_at(0.0, x0).detach(),
                "gamma_1": self._gamma_at(1.0, x0).detach()}

    # --- likelihood and diagnostics (used by the harness' optional hooks) ---------------------------
    def vlb_bits(self, x0: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Per-sample VLB in bits/dim: one antithetic t per sample and fresh noise, all from `generator`."""
        t = sample_times(x0.shape[0], antithetic=self.cfg.antithetic, generator=generator).to(x0.device, x0.dtype)
        eps, eps_0 = (randn_tensor(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype) for _ in range(2))
        with torch.no_grad():
            return sum(self._to_bits(self.vlb_terms(x0, t, eps, eps_0)).values())

    def bpd(self, x0: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor | None:
        """Bits/dim of 8-bit images (the VLB, one t per image); None for continuous data (no bits/dim)."""
        return self.vlb_bits(x0, generator=generator) if self.images else None

    def eval_metrics(self, x0: torch.Tensor, *, generator: torch.Generator) -> dict[str, float]:
        """Images: bpd; 2-D data: vlb, the bound on the negative log-density in bits/dim."""
        return {"bpd" if self.images else "vlb": float(self.vlb_bits(x0, generator=generator).mean())}

    @torch.no_grad()
    def diagnostics(self) -> dict[str, torch.Tensor]:
        """gamma(t) on a grid next to the fixed linear schedule it started from."""
        t = torch.linspace(0.0, 1.0, 201, device=next(self.net.parameters()).device)
        linear = self.cfg.gamma_min + (self.cfg.gamma_max - self.cfg.gamma_min) * t
        return {"t": t.cpu(), "gamma": self.gamma(t).cpu(), "gamma_fixed_linear": linear.cpu()}

    # --- sampling -----------------------------------------------------------------------------------
    def decode(self, z_0: torch.Tensor) -> torch.Tensor:
        """z_0 -> data: the decoder's mode for images, its mean z_0 / alpha_0 for 2-D data."""
        z0_rescaled = z_0 / log_snr_to_alpha_sigma(self._gamma_at(0.0, z_0))[0]
        return decoder_mode(z0_rescaled) if self.images else z0_rescaled

    def prediction(self) -> Prediction:
        decode = "decoder mode (nearest 8-bit level)" if self.images else "decoder mean z_0/alpha_0"
        schedule = ContinuousSchedule(self.gamma, {"gamma": self.cfg.schedule, "decode": decode})
        if self.cfg.num_classes:
            fn = guided_fn(lambda z, t, c: self.eps_model(z, self.gamma(t), c), self.label_slot, self.cfg.num_classes)
            return Prediction(fn, "eps", schedule, decode=self.decode)
        return Prediction(lambda z, t: self.eps_model(z, self.gamma(t)), "eps", schedule, decode=self.decode)
