"""DDGAN's network layers and configs, shared by its generators and discriminators (ddgan_nets.py builds them;
ddgan_unet.py and ddgan_disc.py are the image networks)."""

from __future__ import annotations

import dataclasses
import math

import torch
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.normalization import AdaGroupNorm
from torch import nn
from torch.nn import functional as F


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
