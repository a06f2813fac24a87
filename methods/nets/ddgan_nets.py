"""DDGAN networks: a z-conditioned generator x0' = G(x_{t+1}, t, z) and a time-conditioned
discriminator D(x_{t-1}, t, x_t) -> logit, for 2-D vectors (MLPs, here) and images
(`ddgan_unet.py`, `ddgan_disc.py`).

Shared parts, after the reference code (NVlabs/denoising-diffusion-gan):
- mapping network: z -> PixelNorm -> Linear(nz, z_emb) -> SiLU -> n_mlp x [Linear -> SiLU];
- adaptive group norm (AdaGN): affine-free GroupNorm, then gamma(z) * h + beta(z) with
  (gamma, beta) from one Linear(z_emb -> 2C). diffusers' `AdaGroupNorm` computes
  h * (1 + scale) + shift, i.e. gamma = 1 + scale; its bias is zeroed so a fresh layer is
  the identity map, as the reference initialises gamma = 1, beta = 0. Without z (the
  "no latent z" ablation) the embedding is zero and AdaGN is a learned affine GroupNorm;
- sinusoidal embedding of the integer step t (DDPM's, `get_timestep_embedding`).
For vectors AdaGN uses one group (an adaptive layer norm over the hidden features).

Class-conditional (num_classes K > 0), as class-conditional GANs do it: the generator adds a
learned class embedding to the style z_emb that drives every AdaGN layer (BigGAN's conditional
normalisation, with the mapping network's output in place of its z chunks), and the
discriminator is a projection discriminator (Miyato & Koyama 2018): logit = w . h + <e(c), h>
on its final features h.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from methods.nets.ddgan_disc import TimeDiscriminator
from methods.nets.ddgan_layers import (SQRT2, DiscConfig, GenConfig, LatentEmbedding, Projection, VectorAdaGNBlock,
                                       dense, per_step, sinusoidal)
from methods.nets.ddgan_unet import ZUNet
from methods.nets.fourier import FourierFeatures


# --- 2-D data: MLP generator and discriminator -------------------------------------------------


class MLPGenerator(nn.Module):
    """G(x_{t+1}, t, z) = g(t) * x_{t+1} + out(h) for vectors, h = depth x AdaGN block(temb, z_emb) of
    in([x, sin/cos features]). Unlike the image UNet there is no norm before the output (a norm over
    the features of one vector would discard |x|), and the network starts as the identity map
    (g = 1, out ~ 0, as the reference's zero-initialised output conv), so every x_0' starts near its
    own x_{t+1} and the per-step gain g(t) learns the scale that the posterior mean needs."""

    def __init__(self, dim: int, cfg: GenConfig, *, use_z: bool, num_classes: int = 0):
        super().__init__()
        self.latent = LatentEmbedding(cfg, use_z, num_classes)
        self.nz = self.latent.nz
        self.hidden = cfg.hidden
        self.temb = nn.Sequential(dense(cfg.hidden, 4 * cfg.hidden), nn.SiLU(), dense(4 * cfg.hidden, 4 * cfg.hidden))
        self.features = FourierFeatures(dim, cfg.fourier_freqs)
        self.inp = nn.Linear(self.features.out_dim, cfg.hidden)  # default init: its random bias keeps LN(W x + b) sensitive to |x|
        self.blocks = nn.ModuleList(VectorAdaGNBlock(cfg.hidden, 4 * cfg.hidden, cfg.z_emb_dim) for _ in range(cfg.depth))
        self.out = nn.Sequential(nn.SiLU(), dense(cfg.hidden, dim, scale=0.0))
        self.skip_gain = dense(4 * cfg.hidden, dim, scale=0.0)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        zemb = self.latent(z, x, y)

        def per_step_terms(steps: torch.Tensor) -> torch.Tensor:
            temb = F.silu(self.temb(sinusoidal(steps, self.hidden)))
            return torch.cat([block.temb(temb) for block in self.blocks] + [1 + self.skip_gain(temb)], dim=1)

        terms = per_step(t, per_step_terms)
        biases, gain = terms[:, :-x.shape[1]].unflatten(1, (len(self.blocks), -1)), terms[:, -x.shape[1]:]
        h = self.inp(self.features(x))
        for i, block in enumerate(self.blocks):
            h = block(h, biases[:, i], zemb)
        return gain * x + self.out(h)


class MLPDiscriminator(nn.Module):
    """D(x_{t-1}, t, x_t) for vectors: the pair concatenated, residual LeakyReLU blocks with a
    per-block time bias, as the image discriminator's blocks without the convolutions."""

    def __init__(self, dim: int, cfg: DiscConfig, num_classes: int = 0):
        super().__init__()
        self.act = nn.LeakyReLU(0.2)
        self.projection = Projection(num_classes, cfg.hidden)
        self.t_emb_dim = cfg.t_emb_dim
        self.t_embed = nn.Sequential(dense(cfg.t_emb_dim, cfg.t_emb_dim), self.act, dense(cfg.t_emb_dim, cfg.t_emb_dim))
        self.features = FourierFeatures(dim, cfg.fourier_freqs)  # of x_{t-1}, the sharp member of the pair
        self.inp = dense(self.features.out_dim + dim, cfg.hidden)
        self.fc0 = nn.ModuleList(dense(cfg.hidden, cfg.hidden) for _ in range(cfg.depth))
        self.temb = nn.ModuleList(dense(cfg.t_emb_dim, cfg.hidden) for _ in range(cfg.depth))
        self.fc1 = nn.ModuleList(dense(cfg.hidden, cfg.hidden, scale=0.0) for _ in range(cfg.depth))
        self.out = dense(cfg.hidden, 1)

    def forward(self, x_prev: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        def time_biases(steps: torch.Tensor) -> torch.Tensor:
            temb = self.act(self.t_embed(sinusoidal(steps, self.t_emb_dim)))
            return torch.stack([tb(temb) for tb in self.temb], dim=1)

        biases = per_step(t, time_biases)
        h = self.inp(torch.cat([self.features(x_prev), x_t], dim=1))
        for i, (fc0, fc1) in enumerate(zip(self.fc0, self.fc1)):
            u = fc1(self.act(fc0(self.act(h)) + biases[:, i]))
            h = (h + u) / SQRT2
        h = self.act(h)
        return self.out(h).reshape(-1) + self.projection(h, y)


# --- builders ----------------------------------------------------------------------------------


def _kind(kind: str, auto: str, data_shape: tuple[int, ...], choices: tuple[str, ...], what: str) -> str:
    """The network kind to build: `auto` resolved, and checked against the data's shape."""
    if kind not in ("auto", *choices):
        raise ValueError(f"unknown {what}.kind {kind!r}; choose from: auto, {', '.join(choices)}")
    kind = auto if kind == "auto" else kind
    if (len(data_shape) == 1) != (kind == "mlp"):
        need = "vector data" if kind == "mlp" else "image data (C, H, W)"
        raise ValueError(f"{what}.kind={kind} needs {need}, got shape {data_shape}")
    return kind


def build_generator(cfg: GenConfig, data_shape: tuple[int, ...], *, use_z: bool, num_classes: int = 0) -> nn.Module:
    auto = "mlp" if len(data_shape) == 1 else "unet"
    if _kind(cfg.kind, auto, data_shape, ("mlp", "unet"), "gen") == "mlp":
        return MLPGenerator(data_shape[0], cfg, use_z=use_z, num_classes=num_classes)
    return ZUNet(data_shape, cfg, use_z=use_z, num_classes=num_classes)


def build_discriminator(cfg: DiscConfig, data_shape: tuple[int, ...], num_classes: int = 0) -> nn.Module:
    auto = "mlp" if len(data_shape) == 1 else "small" if data_shape[-1] <= 64 else "large"
    kind = _kind(cfg.kind, auto, data_shape, ("mlp", "small", "large"), "disc")
    if kind == "mlp":
        return MLPDiscriminator(data_shape[0], cfg, num_classes)
    return TimeDiscriminator(data_shape, ngf=cfg.ngf, t_emb_dim=cfg.t_emb_dim, layout=kind, num_classes=num_classes)
