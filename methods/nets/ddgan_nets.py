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

import dataclasses
import math

import torch
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.normalization import AdaGroupNorm
from torch import nn
from torch.nn import functional as F

from methods.nets.fourier import FourierFeatures

SQRT2 = math.sqrt(2.0)


@dataclasses.dataclass(frozen=True)
class GenConfig:
    kind: str = "auto"  # auto | mlp | unet; auto: mlp for vectors, unet for images
    nz: int = 100  # latent z dimension
    z_emb_dim: int = 256  # mapping-network width
    n_mlp: int = 4  # mapping-network layers after the first
    nf: int = 128  # unet base channels (num_channels_dae)
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)  # unet channel multiplier per resolution
    num_res_blocks: int = 2  # unet residual blocks per resolution
    attn_resolutions: tuple[int, ...] = (16,)  # unet resolutions with self-attention
    dropout: float = 0.0
    hidden: int = 256  # mlp width
    depth: int = 3  # mlp residual blocks
    fourier_freqs: tuple[float, ...] = ()  # mlp: append sin/cos(pi f x) of the input for each f


@dataclasses.dataclass(frozen=True)
class DiscConfig:
    kind: str = "auto"  # auto | mlp | small | large; auto: mlp for vectors, small up to 64 px, large above
    ngf: int = 64  # image discriminator base channels
    t_emb_dim: int = 256  # time-embedding width
    hidden: int = 256  # mlp width
    depth: int = 3  # mlp residual blocks
    fourier_freqs: tuple[float, ...] = ()  # mlp: append sin/cos(pi f x) of the input for each f


def variance_scaling_(layer: nn.Module, scale: float = 1.0) -> nn.Module:
    """DDPM/NCSN++ initialisation: uniform with variance scale / fan_avg, zero bias; scale 0 -> ~0."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
    bound = math.sqrt(3.0 * (scale or 1e-10) / max(1.0, (fan_in + fan_out) / 2))
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        if layer.bias is not None:
            layer.bias.zero_()
    return layer


def dense(n_in: int, n_out: int, scale: float = 1.0) -> nn.Linear:
    return variance_scaling_(nn.Linear(n_in, n_out), scale)


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """[sin | cos] of t at frequencies 10000^(-k/(dim/2 - 1)), as the reference's positional embedding."""
    return get_timestep_embedding(t.reshape(-1).float(), dim, flip_sin_to_cos=False, downscale_freq_shift=1)


class PixelNorm(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)


def mapping_network(nz: int, z_emb_dim: int, n_mlp: int) -> nn.Sequential:
    layers: list[nn.Module] = [PixelNorm(), dense(nz, z_emb_dim), nn.SiLU()]
    for _ in range(n_mlp):
        layers += [dense(z_emb_dim, z_emb_dim), nn.SiLU()]
    return nn.Sequential(*layers)


def ada_group_norm(z_emb_dim: int, channels: int, groups: int) -> AdaGroupNorm:
    norm = AdaGroupNorm(z_emb_dim, channels, groups, eps=1e-6)
    nn.init.zeros_(norm.linear.bias)  # gamma = 1, beta = 0 at initialisation
    return norm


class VectorAdaGN(nn.Module):
    """AdaGN with one group on (batch, C) vectors: AdaGroupNorm's maths on a layer norm, without
    the reshape to (batch, C, 1, 1) (several times faster on a CPU)."""

    def __init__(self, z_emb_dim: int, channels: int):
        super().__init__()
        self.linear = nn.Linear(z_emb_dim, 2 * channels)
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor, zemb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(zemb).chunk(2, dim=1)
        return F.layer_norm(h, h.shape[1:], eps=1e-6) * (1 + scale) + shift


class LatentEmbedding(nn.Module):
    """z -> z_emb through the mapping network; zeros (a constant style) when the generator has no z.
    With num_classes K > 0, a learned embedding of the class y is added to it."""

    def __init__(self, cfg: GenConfig, use_z: bool, num_classes: int = 0):
        super().__init__()
        self.nz = cfg.nz if use_z else 0
        self.z_emb_dim = cfg.z_emb_dim
        self.mapping = mapping_network(cfg.nz, cfg.z_emb_dim, cfg.n_mlp) if use_z else None
        self.class_emb = nn.Embedding(num_classes, cfg.z_emb_dim) if num_classes else None

    def forward(self, z: torch.Tensor | None, like: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.mapping is None:
            zemb = like.new_zeros(like.shape[0], self.z_emb_dim)
        elif z is None:
            raise ValueError("this generator takes a latent z; pass z of shape (batch, nz)")
        else:
            zemb = self.mapping(z)
        return zemb + class_term(self.class_emb, y, len(like))


def class_term(emb: nn.Embedding | None, y: torch.Tensor | None, n: int) -> torch.Tensor | float:
    """emb(y) of a conditional network (labels required), 0 for an unconditional one (labels refused)."""
    if emb is None:
        if y is not None:
            raise ValueError("this network is unconditional: it takes no class labels")
        return 0.0
    if y is None or len(y) != n:
        raise ValueError(f"this network is class-conditional: pass one label per sample ({n})")
    return emb(y)


class Projection(nn.Module):
    """The class term <e(y), h> of a projection discriminator; 0 without classes."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.emb = nn.Embedding(num_classes, dim) if num_classes else None
        if self.emb is not None:
            nn.init.normal_(self.emb.weight, std=dim ** -0.5)

    def forward(self, h: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor | float:
        term = class_term(self.emb, y, len(h))
        return term if isinstance(term, float) else (term * h).sum(1)


# --- 2-D data: MLP generator and discriminator -------------------------------------------------


class VectorAdaGNBlock(nn.Module):
    """The AdaGN residual block on vectors: AdaGN -> SiLU -> Linear (+ time bias) -> AdaGN -> SiLU -> Linear."""

    def __init__(self, hidden: int, temb_dim: int, z_emb_dim: int):
        super().__init__()
        self.norm0 = VectorAdaGN(z_emb_dim, hidden)
        self.fc0 = dense(hidden, hidden)
        self.temb = dense(temb_dim, hidden)
        self.norm1 = VectorAdaGN(z_emb_dim, hidden)
        self.fc1 = dense(hidden, hidden, scale=0.0)

    def forward(self, h: torch.Tensor, t_bias: torch.Tensor, zemb: torch.Tensor) -> torch.Tensor:
        u = self.fc0(F.silu(self.norm0(h, zemb))) + t_bias
        u = self.fc1(F.silu(self.norm1(u, zemb)))
        return (h + u) / SQRT2


def per_step(t: torch.Tensor, fn) -> torch.Tensor:
    """fn(t) for a batch of integer steps, computed once per distinct step and gathered:
    t takes at most T values, so the time MLPs cost nothing per sample."""
    steps, index = torch.unique(t.reshape(-1), return_inverse=True)
    return fn(steps)[index]


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
    from methods.nets.ddgan_unet import ZUNet

    return ZUNet(data_shape, cfg, use_z=use_z, num_classes=num_classes)


def build_discriminator(cfg: DiscConfig, data_shape: tuple[int, ...], num_classes: int = 0) -> nn.Module:
    auto = "mlp" if len(data_shape) == 1 else "small" if data_shape[-1] <= 64 else "large"
    kind = _kind(cfg.kind, auto, data_shape, ("mlp", "small", "large"), "disc")
    if kind == "mlp":
        return MLPDiscriminator(data_shape[0], cfg, num_classes)
    from methods.nets.ddgan_disc import TimeDiscriminator

    return TimeDiscriminator(data_shape, ngf=cfg.ngf, t_emb_dim=cfg.t_emb_dim, layout=kind, num_classes=num_classes)
