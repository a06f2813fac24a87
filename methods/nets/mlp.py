"""A time-conditioned residual MLP for 2-D toy data.

x (B, dim) and a scalar condition per sample (an integer timestep, or VDM's gamma_t)
-> output (B, out_dim). The condition enters every block through a sinusoidal
embedding (diffusers' `get_timestep_embedding`) and an MLP, as in the UNets. A class-conditional
MLP (`num_classes` K > 0) adds a learned embedding of y in 0..K (K: the null token) to it.
With `fourier_freqs` the input is widened by sin/cos(pi f x) of itself (methods/nets/fourier.py),
for maps that are sharp in x, such as a consistency function of 0.05-wide modes.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from methods.nets.fourier import FourierFeatures


def null_if_none(y: torch.Tensor | None, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The labels of a conditional network's call: y, or the null token K for every sample."""
    if y is None:
        return torch.full((x.shape[0],), num_classes, dtype=torch.long, device=x.device)
    return y.reshape(-1).long().expand(x.shape[0]) if y.numel() == 1 else y.reshape(-1).long()


class ResBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        u = self.fc1(torch.nn.functional.silu(self.norm(h))) + self.emb(e)
        return h + self.fc2(torch.nn.functional.silu(u))


class TimeMLP(nn.Module):
    """eps/x0 network for vectors: in_proj -> depth x ResBlock(h, emb(t)) -> out_proj.

    `t_scale` multiplies the condition before the sinusoidal embedding, so that a
    condition in [0, 1] (continuous time) spreads over the embedding's frequencies
    like integer timesteps do.
    """

    def __init__(self, dim: int, *, out_dim: int | None = None, hidden: int = 256, depth: int = 3,
                 emb_dim: int = 128, t_scale: float = 1.0, num_classes: int = 0,
                 fourier_freqs: tuple[float, ...] = (), two_times: bool = False):
        super().__init__()
        self.emb_dim = emb_dim
        self.t_scale = t_scale
        self.features = FourierFeatures(dim, tuple(fourier_freqs))
        self.inp = nn.Linear(self.features.out_dim, hidden)
        self.temb = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if two_times:  # a second condition (MeanFlow's t - r), embedded alike and added to the first
            self.temb2 = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.num_classes = num_classes
        if num_classes:  # only then: unconditional networks keep their parameters and state-dict keys
            self.cemb = nn.Embedding(num_classes + 1, emb_dim)
        self.blocks = nn.ModuleList(ResBlock(hidden, emb_dim) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, out_dim or dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                t2: torch.Tensor | None = None) -> torch.Tensor:
        e = self.temb(self._embed(t, x))
        if t2 is not None:
            e = e + self.temb2(self._embed(t2, x))
        if self.num_classes:
            e = e + self.cemb(null_if_none(y, x, self.num_classes))
        h = self.inp(self.features(x))
        for block in self.blocks:
            h = block(h, e)
        return self.out(h)

    def _embed(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        return get_timestep_embedding(t * self.t_scale, self.emb_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
