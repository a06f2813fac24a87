"""DDGAN (Xiao, Kreis, Vahdat, ICLR 2022): denoising diffusion GANs. A few large denoising
steps, each a conditional GAN: the generator proposes x_0, the exact Gaussian posterior
turns it into x_{t-1}, and a time-conditioned discriminator judges the pair (x_{t-1}, x_t).

code                  paper
T                     T, the number of denoising steps (each T is its own trained model)
betas[k], k = 0..T    beta_k of the VP-SDE discretised into T steps (beta_0 = 1e-8 pad)
abar[k]               \\bar{alpha}_k = prod_{j <= k} (1 - beta_j)
t                     step index in {0..T-1}; the pair is (x_t, x_{t+1}) = (x_{t-1}, x_t) in the paper
x_t, x_next           x_t ~ q(x_t | x_0), x_{t+1} ~ q(x_{t+1} | x_t)
G(x_next, t, z)       G_theta(x_t, z, t), z ~ N(0, I_nz): predicts x_0 (parameterization "x0")
x0_pred               x_0' ; "eps": x_0' = (x_next - sqrt(1-abar_{t+1}) eps') / sqrt(abar_{t+1})
x_fake                x_t' ~ q(x_t | x_{t+1}, x_0') (posterior sampling; no noise at t = 0),
                      or G's output itself (parameterization "direct")
D(x_prev, t, x_t)     D_phi(x_{t-1}, x_t, t), a logit
loss (disc)           softplus(-D(real pair)) + softplus(D(fake pair)) + R1
r1                    (gamma / 2) E ||grad_{x_t} D(x_t, t, x_{t+1})||^2 on real pairs, every lazy_reg steps
loss (gen)            softplus(-D(fake pair)), on a fresh t and pair
sampler               the `ddgan` sampler (methods/samplers/ddgan.py): x_T ~ N(0, I); for t = T-1..0:
                      x_t ~ q(x_t | x_{t+1}, G(x_{t+1}, t, z)), fresh z: NFE = T
num_classes           K > 0: G(x_{t+1}, t, z, c) and D(x_{t-1}, t, x_t, c), as class-conditional GANs
                      condition them (a class embedding added to the AdaGN style; a projection
                      discriminator; methods/nets/ddgan_nets.py). Sampled conditionally, w = 0
                      only: no null class is trained, so there is nothing to guide with.

Ablations of the paper's Table 2 are config options: T (T = 1 is a plain GAN on x_1 ~ noise),
use_z = false (no latent z: G is deterministic given x_{t+1}), parameterization "direct"
(G outputs x_{t-1}) and "eps" (G outputs the noise). Training schedule, EMA and the lr decay
come from the harness (train.ema_decay, train.lr_schedule = cosine, train.lr_min).
"""

from __future__ import annotations

import dataclasses

import torch
from torch.nn import functional as F

from methods.base import Model, ParamGroup
from methods.prediction import Prediction
from methods.nets.ddgan_nets import build_discriminator, build_generator
from methods.nets.ddgan_layers import DiscConfig, GenConfig
from methods.registry import register_model
from methods.schedules import alpha_bars, posterior, vp_discretised_betas

T_RANGE = (1, 64)
PARAMETERIZATIONS = ("x0", "direct", "eps")
OUT_ACTS = ("tanh", "none")


@dataclasses.dataclass(frozen=True)
class DDGANConfig:
    T: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    parameterization: str = "x0"  # x0 | direct (G outputs x_{t-1}) | eps (G outputs the noise)
    use_z: bool = True  # false: the "no latent z" ablation
    out_act: str = "tanh"  # x0 output activation: tanh for data in [-1, 1], none for unbounded (toy) data
    lr_g: float = 1.6e-4
    lr_d: float = 1.25e-4
    adam_betas: tuple[float, ...] = (0.5, 0.9)
    r1_gamma: float = 0.02  # 0 disables R1
    lazy_reg: int = 15  # R1 on steps where step % lazy_reg == 0 (not rescaled by the interval)
    gen: GenConfig = GenConfig()
    disc: DiscConfig = DiscConfig()
    # K > 0: class-conditional generator and discriminator (labels from the data)
    num_classes: int = dataclasses.field(default=0, metadata={"id": "omit_default"})


@dataclasses.dataclass(frozen=True)
class Coefs:
    """Per-step coefficients, index k = 0..T (float32, on the model's device)."""

    sqrt_abar: torch.Tensor
    sqrt_1m_abar: torch.Tensor
    sqrt_alpha: torch.Tensor
    sqrt_beta: torch.Tensor
    post_x0: torch.Tensor
    post_xt: torch.Tensor
    post_std: torch.Tensor

    @staticmethod
    def at(v: torch.Tensor, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v[k].reshape(-1, *([1] * (like.dim() - 1)))

    def q_pair(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, eps_next: torch.Tensor):
        """(x_t, x_{t+1}): x_t ~ q(x_t | x_0), then one forward step x_{t+1} ~ q(x_{t+1} | x_t)."""
        x_t = self.at(self.sqrt_abar, t, x0) * x0 + self.at(self.sqrt_1m_abar, t, x0) * eps
        x_next = self.at(self.sqrt_alpha, t + 1, x0) * x_t + self.at(self.sqrt_beta, t + 1, x0) * eps_next
        return x_t, x_next

    def posterior_sample(self, x0: torch.Tensor, x_next: torch.Tensor, t: torch.Tensor,
                         noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_{t+1}, x_0): the posterior of step t+1; deterministic at t = 0."""
        k = t + 1
        mean = self.at(self.post_x0, k, x0) * x0 + self.at(self.post_xt, k, x0) * x_next
        std = self.at(self.post_std, k, x0) * (t > 0).to(x0.dtype).reshape(-1, *([1] * (x0.dim() - 1)))
        return mean + std * noise

    def x0_from_eps(self, eps: torch.Tensor, x_next: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        k = t + 1
        return (x_next - self.at(self.sqrt_1m_abar, k, x_next) * eps) / self.at(self.sqrt_abar, k, x_next)


def make_coefs(T: int, beta_min: float, beta_max: float) -> dict[str, torch.Tensor]:
    betas = vp_discretised_betas(T, beta_min, beta_max)
    abar = alpha_bars(betas)
    post = posterior(betas)
    values = dict(sqrt_abar=abar.sqrt(), sqrt_1m_abar=(1 - abar).sqrt(), sqrt_alpha=(1 - betas).sqrt(),
                  sqrt_beta=betas.sqrt(), post_x0=post.coef_x0, post_xt=post.coef_xt, post_std=post.var.sqrt())
    return {k: v.float() for k, v in values.items()}


@register_model("ddgan")
class DDGAN(Model):
    """T-step denoising diffusion GAN: discriminator step, then generator step, each iteration."""

    Config = DDGANConfig
    phases = ("disc", "gen")
    ema_modules = ("gen",)
    kind = "sample"
    time = "trained"
    family = "gan"
    native_sampler = "ddgan"
    steps_are_trained = True
    key_params = ("T",)
    summary = "DDGAN: T-step denoising diffusion GAN (x0 generator with latent z, posterior sampling); NFE = T"
    guided = False  # a conditional DDGAN samples its classes without classifier-free guidance

    def __init__(self, cfg: DDGANConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        self.check_config(cfg)
        self.gen = build_generator(cfg.gen, self.data_shape, use_z=cfg.use_z, num_classes=cfg.num_classes)
        self.disc = build_discriminator(cfg.disc, self.data_shape, num_classes=cfg.num_classes)
        for name, value in make_coefs(cfg.T, cfg.beta_min, cfg.beta_max).items():
            self.register_buffer(name, value, persistent=False)

    # --- configuration -------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: DDGANConfig) -> None:
        lo, hi = T_RANGE
        checks = [
            (lo <= cfg.T <= hi, f"T={cfg.T} is out of range: use {lo}..{hi} (T = 1 is a plain GAN; the paper uses 2..8)"),
            (cfg.parameterization in PARAMETERIZATIONS,
             f"parameterization {cfg.parameterization!r} is unknown; choose from: {', '.join(PARAMETERIZATIONS)}"),
            (cfg.out_act in OUT_ACTS, f"out_act {cfg.out_act!r} is unknown; choose from: {', '.join(OUT_ACTS)}"),
            (cfg.r1_gamma >= 0, f"r1_gamma must be >= 0, got {cfg.r1_gamma}"),
            (cfg.lazy_reg >= 1, f"lazy_reg must be >= 1, got {cfg.lazy_reg}"),
            (len(cfg.adam_betas) == 2, f"adam_betas needs two values, got {cfg.adam_betas}"),
            (cfg.gen.nz >= 1, f"gen.nz must be >= 1, got {cfg.gen.nz}"),
            (0 < cfg.beta_min < cfg.beta_max, f"need 0 < beta_min < beta_max, got {cfg.beta_min}, {cfg.beta_max}"),
            (0 <= cfg.num_classes <= 100_000, f"num_classes={cfg.num_classes} is out of range: use 0 or 1..100000"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)

    @classmethod
    def steps_overrides(cls, steps: int) -> dict[str, int]:
        return {"T": steps}

    def param_groups(self) -> dict[str, ParamGroup]:
        betas = tuple(self.cfg.adam_betas)
        return {"disc": ParamGroup(list(self.disc.parameters()), lr=self.cfg.lr_d, betas=betas),
                "gen": ParamGroup(list(self.gen.parameters()), lr=self.cfg.lr_g, betas=betas)}

    # --- training ------------------------------------------------------------------------------
    @property
    def coefs(self) -> Coefs:
        return Coefs(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Coefs)})

    def predict(self, x_next: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        """One generator call: x_0' (parameterizations x0 and eps) or x_t' (direct). A conditional model
        takes its labels as `y` in training, and from the label slot while a sampler runs."""
        if self.cfg.num_classes:
            y = y if y is not None else self.sampling_labels(x_next)
            out = self.gen(x_next, t, z, y)
        else:
            out = self.gen(x_next, t, z)
        if self.cfg.parameterization == "eps":
            return self.coefs.x0_from_eps(out, x_next, t)
        if self.cfg.parameterization == "x0" and self.cfg.out_act == "tanh":
            return torch.tanh(out)
        return out

    def sampling_labels(self, like: torch.Tensor) -> torch.Tensor:
        slot = self.label_slot
        if slot.labels is None or slot.guidance is None:
            raise RuntimeError("a class-conditional model samples through ConditionedSampler (labels);"
                               " build it with methods.guidance.condition")
        if slot.guidance.w != 0:
            raise RuntimeError("a conditional DDGAN samples with guidance 0 only")
        return slot.labels.to(like.device)

    def disc_(self, x_prev: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.disc(x_prev, t, x_t, y) if self.cfg.num_classes else self.disc(x_prev, t, x_t)

    def fake_pair_member(self, x_next: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x_t' given x_{t+1}: a fresh z, one generator call, then posterior sampling."""
        z = torch.randn(x_next.shape[0], self.gen.nz, device=x_next.device) if self.gen.nz else None
        out = self.predict(x_next, t, z, y)
        if self.cfg.parameterization == "direct":
            return out
        return self.coefs.posterior_sample(out, x_next, t, torch.randn_like(x_next))

    def real_pair(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t = torch.randint(0, self.cfg.T, (x0.shape[0],), device=x0.device)
        x_t, x_next = self.coefs.q_pair(x0, t, torch.randn_like(x0), torch.randn_like(x0))
        return t, x_t, x_next

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        if self.cfg.num_classes and y is None:
            raise ValueError("a class-conditional DDGAN trains on labelled batches")
        if phase == "disc":
            return self.disc_losses(x0, step, y)
        if phase == "gen":
            return self.gen_losses(x0, y)
        raise ValueError(f"unknown phase {phase!r}; ddgan has: {', '.join(self.phases)}")

    def disc_losses(self, x0: torch.Tensor, step: int, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.disc.requires_grad_(True)
        t, x_t, x_next = self.real_pair(x0)
        use_r1 = self.cfg.r1_gamma > 0 and step % self.cfg.lazy_reg == 0
        x_t.requires_grad_(use_r1)
        d_real = self.disc_(x_t, t, x_next, y)
        with torch.no_grad():
            x_fake = self.fake_pair_member(x_next, t, y)
        d_fake = self.disc_(x_fake, t, x_next, y)
        out = {"real": F.softplus(-d_real).mean(), "fake": F.softplus(d_fake).mean()}
        loss = out["real"] + out["fake"]
        if use_r1:
            (grad,) = torch.autograd.grad(d_real.sum(), x_t, create_graph=True)
            out["r1"] = self.cfg.r1_gamma / 2 * grad.flatten(1).pow(2).sum(1).mean()
            loss = loss + out["r1"]
        return {"loss": loss, **out}

    def gen_losses(self, x0: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self.disc.requires_grad_(False)  # the generator step needs no discriminator weight gradients
        t, _, x_next = self.real_pair(x0)  # a fresh t and pair
        d_fake = self.disc_(self.fake_pair_member(x_next, t, y), t, x_next, y)
        return {"loss": F.softplus(-d_fake).mean()}

    # --- sampling ------------------------------------------------------------------------------
    def denoisers(self) -> list[torch.nn.Module]:
        return [self.gen]

    def prediction(self) -> Prediction:
        """The generator's proposal x_0' (x_t' when direct) given (x_{t+1}, t, z): only the `ddgan` sampler uses it."""
        return Prediction(self.predict, "sample", None)
