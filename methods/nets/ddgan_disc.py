"""DDGAN's time-conditioned image discriminators D(x_{t-1}, t, x_t) -> logit (reference:
`discriminator.py`, Discriminator_small for 32 px and Discriminator_large for 256 px).

The pair is concatenated on channels; the step t goes through a sinusoidal embedding and
a LeakyReLU MLP and enters every down block as a per-channel bias. Blocks:
    h = Conv_1(act(x)) + Dense(t_emb); h = act(h); [FIR down h and x]; h = Conv_2(h)
    out = (h + skip(x)) / sqrt(2)
then a minibatch-stddev feature, a 3x3 conv, global sum pooling and a linear logit.
"""

from __future__ import annotations

import torch
from torch import nn

from methods.nets.fir import fir_downsample
from methods.nets.ddgan_layers import SQRT2, Projection, dense, sinusoidal, variance_scaling_

# (in, out) channel multiples of ngf and whether the block halves the resolution
LAYOUTS = {
    "small": [(2, 2, False), (2, 4, True), (4, 8, True), (8, 8, True)],
    "large": [(2, 4, True), (4, 8, True), (8, 8, True), (8, 8, True), (8, 8, True), (8, 8, True)],
}


def conv(c_in: int, c_out: int, k: int = 3, scale: float = 1.0, bias: bool = True) -> nn.Conv2d:
    return variance_scaling_(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias), scale)


class DownConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_emb_dim: int, downsample: bool):
        super().__init__()
        self.act = nn.LeakyReLU(0.2)
        self.downsample = downsample
        self.conv1 = conv(c_in, c_out)
        self.dense_t = dense(t_emb_dim, c_out)
        self.conv2 = conv(c_out, c_out, scale=0.0)
        self.skip = conv(c_in, c_out, k=1, bias=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.act(self.conv1(self.act(x)) + self.dense_t(temb)[:, :, None, None])
        if self.downsample:
            h, x = fir_downsample(h), fir_downsample(x)
        return (self.conv2(h) + self.skip(x)) / SQRT2


def minibatch_stddev(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the std of features across groups of samples (StyleGAN2), averaged to one channel.
    The group is the largest size <= `group` that divides the batch (the reference needs batch % 4 == 0)."""
    b, c, hh, ww = h.shape
    g = max(d for d in range(1, min(group, b) + 1) if b % d == 0)
    std = torch.sqrt(h.reshape(g, -1, c, hh, ww).var(0, unbiased=False) + 1e-8)
    std = std.mean(dim=(1, 2, 3), keepdim=True).repeat(g, 1, hh, ww)
    return torch.cat([h, std], dim=1)


class TimeDiscriminator(nn.Module):
    """`layout` small (3 halvings: 32 px -> 4 px) or large (6 halvings: 256 px -> 4 px). A block
    halves the resolution only while it is even and at least 8, so 28 px (MNIST) ends at 7 px."""

    def __init__(self, data_shape: tuple[int, int, int], *, ngf: int, t_emb_dim: int, layout: str,
                 num_classes: int = 0):
        super().__init__()
        c, size, _ = data_shape
        self.act = nn.LeakyReLU(0.2)
        self.t_emb_dim = t_emb_dim
        self.t_embed = nn.Sequential(dense(t_emb_dim, t_emb_dim), self.act, dense(t_emb_dim, t_emb_dim))
        self.start = conv(2 * c, 2 * ngf, k=1)
        self.blocks = nn.ModuleList()
        for a, b, down in LAYOUTS[layout]:
            down = down and size % 2 == 0 and size >= 8  # halve while even: 32 -> 4 px, 28 -> 7 px
            size = size // 2 if down else size
            self.blocks.append(DownConvBlock(a * ngf, b * ngf, t_emb_dim, down))
        top = LAYOUTS[layout][-1][1] * ngf
        self.final_conv = conv(top + 1, top, scale=0.0 if layout == "small" else 1.0)
        self.end_linear = dense(top, 1)
        self.projection = Projection(num_classes, top)  # class-conditional: the projection term

    def forward(self, x_prev: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        temb = self.act(self.t_embed(sinusoidal(t, self.t_emb_dim)))
        h = self.start(torch.cat([x_prev, x_t], dim=1))
        for block in self.blocks:
            h = block(h, temb)
        h = self.act(self.final_conv(minibatch_stddev(h)))
        h = h.sum(dim=(2, 3))
        return self.end_linear(h).reshape(-1) + self.projection(h, y)

