"""The DDGAN image generator: a z-conditioned UNet x0' = G(x_{t+1}, t, z), in pure PyTorch.

It follows the reference NCSN++ generator (`ncsnpp_generator_adagn.py`) with the settings
the repository trains with: BigGAN-style residual blocks with FIR up/down-sampling
(kernel 1,3,3,1), skip rescaling by 1/sqrt(2), self-attention at `attn_resolutions` and in
the middle, a residual input pyramid, sinusoidal time embedding -> 2-layer MLP (4 nf),
and a latent z through the mapping network into **every** block norm (AdaGN).

Residual block (ResnetBlockBigGANpp_Adagn):
    h = SiLU(AdaGN_0(x, z)); [FIR up/down h and x]; h = Conv_0(h) + Dense(SiLU(temb))
    h = Conv_1(Dropout(SiLU(AdaGN_1(h, z))));  out = (skip(x) + h) / sqrt(2)
Library parts: diffusers' `AdaGroupNorm` (see ddgan_nets) and `Attention`; FIR resampling is
upfirdn2d's maths as depthwise convolutions (`fir.py`): no custom CUDA kernels.
Differences from the reference, all in resampling details: the pyramid's down-sampling
is FIR then a 3x3 convolution (the reference fuses them into one strided convolution).
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from torch import nn
from torch.nn import functional as F

from methods.nets.fir import fir_downsample, fir_upsample
from methods.nets.ddgan_layers import (SQRT2, GenConfig, LatentEmbedding, ada_group_norm, dense, sinusoidal,
                                       variance_scaling_)



def groups(channels: int) -> int:
    return max(1, min(channels // 4, 32))


def conv(c_in: int, c_out: int, k: int = 3, scale: float = 1.0) -> nn.Conv2d:
    return variance_scaling_(nn.Conv2d(c_in, c_out, k, padding=k // 2), scale)


class AdaGNResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, *, temb_dim: int, z_emb_dim: int, up: bool = False,
                 down: bool = False, dropout: float = 0.0):
        super().__init__()
        self.up, self.down = up, down
        self.norm0 = ada_group_norm(z_emb_dim, c_in, groups(c_in))
        self.conv0 = conv(c_in, c_out)
        self.temb = dense(temb_dim, c_out)
        self.norm1 = ada_group_norm(z_emb_dim, c_out, groups(c_out))
        self.dropout = nn.Dropout(dropout)
        self.conv1 = conv(c_out, c_out, scale=0.0)
        self.skip = conv(c_in, c_out, k=1) if c_in != c_out or up or down else None

    def resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return fir_upsample(x)
        return fir_downsample(x) if self.down else x

    def forward(self, x: torch.Tensor, temb: torch.Tensor, zemb: torch.Tensor) -> torch.Tensor:
        h = self.resample(F.silu(self.norm0(x, zemb)))
        x = self.resample(x)
        h = self.conv0(h) + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv1(self.dropout(F.silu(self.norm1(h, zemb))))
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) / SQRT2


def attention(channels: int) -> Attention:
    """NCSN++'s AttnBlockpp: GroupNorm, one head, residual, output / sqrt(2), output layer initialised ~0."""
    attn = Attention(channels, heads=1, dim_head=channels, rescale_output_factor=SQRT2, eps=1e-6,
                     norm_num_groups=groups(channels), residual_connection=True, bias=True, upcast_softmax=True,
                     _from_deprecated_attn_block=True)
    variance_scaling_(attn.to_out[0], 0.0)
    return attn


class PyramidDown(nn.Module):
    """Residual input pyramid: FIR down-sampling of the previous pyramid level, then a 3x3 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = conv(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(fir_downsample(x))


class ZUNet(nn.Module):
    """x0' = G(x_{t+1}, t, z) for images (C, H, W); H must be divisible by 2^(len(ch_mult) - 1)."""

    def __init__(self, data_shape: tuple[int, int, int], cfg: GenConfig, *, use_z: bool, num_classes: int = 0):
        super().__init__()
        c, size, _ = data_shape
        levels = len(cfg.ch_mult)
        if size % 2 ** (levels - 1):
            raise ValueError(f"image size {size} is not divisible by 2^{levels - 1} for {levels} generator levels;"
                             " pad the data (data.resolution) or shorten gen.ch_mult")
        self.latent = LatentEmbedding(cfg, use_z, num_classes)
        self.nz, self.nf = self.latent.nz, cfg.nf
        nf, tdim = cfg.nf, 4 * cfg.nf
        block = dict(temb_dim=tdim, z_emb_dim=cfg.z_emb_dim, dropout=cfg.dropout)
        self.temb = nn.Sequential(dense(nf, tdim), nn.SiLU(), dense(tdim, tdim))
        self.conv_in = conv(c, nf)
        self.down, skips, ch, pyramid_ch = nn.ModuleList(), [nf], nf, c
        for i, mult in enumerate(cfg.ch_mult):
            res = size // 2 ** i
            level = nn.ModuleDict({"blocks": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(cfg.num_res_blocks):
                level["blocks"].append(AdaGNResBlock(ch, nf * mult, **block))
                ch = nf * mult
                if res in cfg.attn_resolutions:
                    level["attn"].append(attention(ch))
                skips.append(ch)
            if i < levels - 1:
                level["resample"] = AdaGNResBlock(ch, ch, down=True, **block)
                level["pyramid"] = PyramidDown(pyramid_ch, ch)
                pyramid_ch = ch
                skips.append(ch)
            self.down.append(level)
        self.mid = nn.ModuleList([AdaGNResBlock(ch, ch, **block), attention(ch), AdaGNResBlock(ch, ch, **block)])
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.ch_mult))):
            level = nn.ModuleDict({"blocks": nn.ModuleList(), "attn": nn.ModuleList()})
            for _ in range(cfg.num_res_blocks + 1):
                level["blocks"].append(AdaGNResBlock(ch + skips.pop(), nf * mult, **block))
                ch = nf * mult
            if size // 2 ** i in cfg.attn_resolutions:
                level["attn"].append(attention(ch))
            if i > 0:
                level["resample"] = AdaGNResBlock(ch, ch, up=True, **block)
            self.up.append(level)
        self.norm_out = nn.GroupNorm(groups(ch), ch, eps=1e-6)
        self.conv_out = conv(ch, c, scale=0.0)

    def forward(self, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
        zemb = self.latent(z, x, y)
        temb = self.temb(sinusoidal(t, self.nf))
        hs, pyramid = [self.conv_in(x)], x
        for level in self.down:
            for j, blk in enumerate(level["blocks"]):
                h = blk(hs[-1], temb, zemb)
                hs.append(level["attn"][j](h) if len(level["attn"]) else h)
            if "resample" in level:
                h = level["resample"](hs[-1], temb, zemb)
                pyramid = (level["pyramid"](pyramid) + h) / SQRT2
                hs.append(pyramid)
        h = self.mid[2](self.mid[1](self.mid[0](hs[-1], temb, zemb)), temb, zemb)
        for level in self.up:
            for blk in level["blocks"]:
                h = blk(torch.cat([h, hs.pop()], dim=1), temb, zemb)
            for attn in level["attn"]:
                h = attn(h)
            if "resample" in level:
                h = level["resample"](h, temb, zemb)
        return self.conv_out(F.silu(self.norm_out(h)))
