"""Fourier features of a network's vector input, shared by the toy MLPs."""

from __future__ import annotations

import math

import torch
from torch import nn


class FourierFeatures(nn.Module):
    """x -> [x, sin(pi f x), cos(pi f x)] for each frequency f (a positional encoding, Tancik et al.
    2020): MLPs on raw 2-D coordinates learn sharp functions slowly; these features let the
    toy networks resolve 0.05-wide modes in a few thousand steps. No frequencies: the identity."""

    def __init__(self, dim: int, freqs: tuple[float, ...]):
        super().__init__()
        self.register_buffer("freqs", math.pi * torch.tensor(freqs, dtype=torch.float32), persistent=False)
        self.out_dim = dim * (1 + 2 * len(freqs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not len(self.freqs):
            return x
        p = (x[:, :, None] * self.freqs).flatten(1)
        return torch.cat([x, p.sin(), p.cos()], dim=1)
