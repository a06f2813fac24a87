"""The first stage of latent diffusion (Rombach et al. 2022): a KL-regularised autoencoder on
diffusers' AutoencoderKL. It is trained by the harness like any model, but it is a stage, not a
generative model: it has no sampler (`samplable = False`). Other runs train and sample in its
latent space with `data.latent` (bench/runs/stage.py scales the latents and decodes samples).

code            paper (LDM, appendix G; the reference's LPIPSWithDiscriminator, without LPIPS)
E, D            encoder E(x) = q(z | x), a diagonal Gaussian; decoder D(z)
z               a sample of q(z | x) (the reparameterisation; the harness's seeded global RNG)
rec             |x - D(z)| (l1) or (x - D(z))^2 (l2), the mean over pixels
kl              KL(q(z | x) || N(0, I)), summed over latent dimensions, divided by the pixel count,
                so that kl_weight keeps the reference's ratio to a per-image summed reconstruction
loss (model)    rec + kl_weight kl + adv_weight (-mean D_phi(D(z)))   [the last term from adv_start]
loss (disc)     hinge: mean relu(1 - D_phi(x)) + mean relu(1 + D_phi(D(z)))  (a patch discriminator)
pad             background pixels added around each side before E and cropped after D, so that a
                28-px digit becomes a 4 x 8 x 8 latent (32 / 2^2), which 3-level UNets can halve

No perceptual (LPIPS) term: its VGG weights are a download, and every stage here trains offline.
The adversarial weight is fixed (adv_weight), where the reference adapts it to the ratio of the
last decoder layer's gradient norms: an extra autograd pass per step, not worth it at these sizes.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torch import nn

from methods.base import Model, ParamGroup
from methods.registry import register_model

REC_LOSSES = ("l1", "l2")


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    channels: tuple[int, ...] = (64, 128, 128)  # block widths; len - 1 downsamplings (3 levels: 32 px -> 8)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_groups: int = 32  # GroupNorm groups: every width must be divisible by it
    attention: bool = True  # self-attention in the middle block (at the latent resolution)
    pad: int = 0  # background pixels around each side before encoding (MNIST: 2, 28 -> 32 px)
    rec_loss: str = "l1"  # l1 | l2
    kl_weight: float = 1e-6  # the reference's kl-f8 setting
    lr: float = 1e-4
    adv_weight: float = 0.0  # > 0: a patch discriminator's hinge loss joins the reconstruction loss
    adv_start: int = 0  # the step from which the adversarial term applies (the reference's disc_start)
    disc_channels: int = 64
    lr_d: float = 1e-4


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (Isola et al. 2017): one logit per overlapping patch, as LDM's stage uses."""

    def __init__(self, in_channels: int, nf: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, nf, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(nf, 2 * nf, 4, 2, 1), nn.GroupNorm(min(32, 2 * nf), 2 * nf), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * nf, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register_model("autoencoder")
class Autoencoder(Model):
    """A KL autoencoder: the latent space other methods run in (`--latent`). Trained, never sampled."""

    Config = AutoencoderConfig
    phases = ("model", "disc")
    ema_modules = ("vae",)
    kind = "sample"
    time = "continuous"
    family = "stage"
    samplable = False
    summary = "autoencoder: KL-regularised AutoencoderKL, the latent space of `--latent` runs (a stage, no sampler)"

    def __init__(self, cfg: AutoencoderConfig, data_shape: tuple[int, ...]):
        super().__init__(cfg, data_shape)
        if len(self.data_shape) != 3:
            raise ValueError(f"the autoencoder needs image data (C, H, W), got shape {self.data_shape}")
        c, h, w = self.data_shape
        factor = 2 ** (len(cfg.channels) - 1)
        if (h + 2 * cfg.pad) % factor or (w + 2 * cfg.pad) % factor:
            raise ValueError(f"the autoencoder halves the image {len(cfg.channels) - 1} times: {h}x{w} px plus"
                             f" 2 x model.pad={cfg.pad} must be divisible by {factor}; set model.pad (MNIST's 28 px:"
                             " 2) or fewer model.channels")
        self.latent_shape = (cfg.latent_channels, (h + 2 * cfg.pad) // factor, (w + 2 * cfg.pad) // factor)
        n = len(cfg.channels)
        self.vae = AutoencoderKL(in_channels=c, out_channels=c, down_block_types=("DownEncoderBlock2D",) * n,
                                 up_block_types=("UpDecoderBlock2D",) * n, block_out_channels=tuple(cfg.channels),
                                 layers_per_block=cfg.layers_per_block, latent_channels=cfg.latent_channels,
                                 norm_num_groups=cfg.norm_groups, mid_block_add_attention=cfg.attention,
                                 sample_size=h + 2 * cfg.pad)
        self.disc = PatchDiscriminator(c, cfg.disc_channels) if cfg.adv_weight > 0 else None

    @classmethod
    def check_config(cls, cfg: AutoencoderConfig) -> None:
        if not cfg.channels:
            raise ValueError("model.channels must name at least one block width")
        if cfg.norm_groups < 1 or any(ch % cfg.norm_groups for ch in cfg.channels):
            raise ValueError(f"every model.channels width must be divisible by model.norm_groups={cfg.norm_groups},"
                             f" got {list(cfg.channels)}")
        if cfg.latent_channels < 1 or cfg.layers_per_block < 1 or cfg.pad < 0:
            raise ValueError("model.latent_channels and model.layers_per_block must be >= 1, model.pad >= 0")
        if cfg.rec_loss not in REC_LOSSES:
            raise ValueError(f"model.rec_loss must be one of {', '.join(REC_LOSSES)}, got {cfg.rec_loss!r}")
        if cfg.kl_weight < 0 or cfg.adv_weight < 0 or cfg.adv_start < 0:
            raise ValueError("model.kl_weight, model.adv_weight and model.adv_start must be >= 0")

    @classmethod
    def phases_for(cls, cfg: AutoencoderConfig) -> tuple[str, ...]:
        return cls.phases if cfg.adv_weight > 0 else ("model",)

    def param_groups(self) -> dict[str, ParamGroup]:
        groups = {"model": ParamGroup(list(self.vae.parameters()), lr=self.cfg.lr, betas=(0.5, 0.9))}
        if self.disc is not None:
            groups["disc"] = ParamGroup(list(self.disc.parameters()), lr=self.cfg.lr_d, betas=(0.5, 0.9))
        return groups

    # --- the stage: what bench/runs/stage.py calls --------------------------------------------------------
    def encode(self, x: torch.Tensor):
        """q(z | x) of images in model space ([-1, 1]), padded with background (-1) first."""
        p = self.cfg.pad
        if p:
            x = F.pad(x, (p, p, p, p), value=-1.0)
        return self.vae.encode(x).latent_dist

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z), cropped back to the data's size (model space)."""
        x = self.vae.decode(z).sample
        p = self.cfg.pad
        return x[..., p:x.shape[-2] - p, p:x.shape[-1] - p] if p else x

    def reconstruct(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """D(z) for z ~ q(z | x) (from `generator`; the global RNG when None)."""
        post = self.encode(x)
        noise = torch.randn(post.mean.shape, generator=generator, device="cpu" if generator is not None
                            else post.mean.device).to(post.mean)
        return self.decode(post.mean + post.std * noise)

    # --- training -------------------------------------------------------------------------------------
    def _rec(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        return (x - x_hat).abs().mean() if self.cfg.rec_loss == "l1" else F.mse_loss(x_hat, x)

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        adversarial = self.disc is not None and step >= self.cfg.adv_start
        if phase == "model":
            post = self.encode(x0)
            x_hat = self.decode(post.sample())
            rec = self._rec(x0, x_hat)
            kl = post.kl().mean() / x0[0].numel()
            loss = rec + self.cfg.kl_weight * kl
            out = {"rec": rec.detach(), "kl": kl.detach()}
            if adversarial:
                g = -self.disc(x_hat).mean()
                loss = loss + self.cfg.adv_weight * g
                out["g_adv"] = g.detach()
            return {"loss": loss, **out}
        if phase == "disc" and self.disc is not None:
            if not adversarial:  # before adv_start: a zero loss that still reaches every parameter
                return {"loss": sum(p.sum() for p in self.disc.parameters()) * 0.0}
            with torch.no_grad():
                x_hat = self.reconstruct(x0)
            real, fake = self.disc(x0), self.disc(x_hat)
            loss = F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
            return {"loss": loss, "d_real": real.mean().detach(), "d_fake": fake.mean().detach()}
        raise ValueError(f"unknown phase {phase!r}; the autoencoder has: {', '.join(self.phases_for(self.cfg))}")

    def eval_metrics(self, x0: torch.Tensor, *, generator: torch.Generator) -> dict[str, float]:
        """Held-out reconstruction error (a posterior sample from `generator`), logged as eval/rec."""
        with torch.no_grad():
            return {"rec": float(self._rec(x0, self.reconstruct(x0, generator)))}

    def denoisers(self) -> list[nn.Module]:
        return []

    def prediction(self):
        raise ValueError("the autoencoder is a stage, not a generative model: sample a model trained in its"
                         " latent space (--latent)")
