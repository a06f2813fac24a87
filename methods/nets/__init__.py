"""Denoiser networks: `mlp` for 2-D toy data, `unet` (diffusers' UNet2DModel) for images.

Every denoiser is called as `net(x, t)` with `t` one scalar condition per sample
(an integer timestep, or a rescaled noise level) and returns a tensor shaped like
its target. `diffusers` builds a UNet2DModel verbatim from its config (`net.unet_config`),
which is how `bench import` brings a trained diffusers model in. Built with `num_classes` K > 0 it is class-conditional, `net(x, t, y)`: a
learned embedding of y in 0..K (K: the null token of classifier-free guidance) is added
to the time embedding; y = None means the null token.
"""

from __future__ import annotations

import dataclasses

from torch import nn
from methods.nets.mlp import TimeMLP
from methods.nets.unet import UNet


@dataclasses.dataclass(frozen=True)
class NetConfig:
    kind: str = "auto"  # auto | mlp | unet | diffusers; auto picks mlp for vectors, unet for images
    hidden: int = 256  # mlp width
    depth: int = 3  # mlp residual blocks
    emb_dim: int = 128  # mlp condition-embedding width
    # mlp: append sin/cos(pi f x) of the input for each f
    fourier_freqs: tuple[float, ...] = dataclasses.field(default=(), metadata={"id": "omit_default"})
    channels: tuple[int, ...] = (64, 128, 128)  # unet block widths, one per resolution
    layers_per_block: int = 2  # unet
    attn_levels: tuple[int, ...] = (1,)  # unet levels (0 = full resolution) with self-attention
    dropout: float = 0.0
    # kind=diffusers: a UNet2DModel config (JSON) built verbatim, e.g. an imported model
    unet_config: str = dataclasses.field(default="", metadata={"id": "omit_default"})


def build_net(cfg: NetConfig, data_shape: tuple[int, ...], *, in_extra: int = 0, t_scale: float = 1.0,
              num_classes: int = 0, two_times: bool = False) -> nn.Module:
    """A denoiser for data of `data_shape`; `in_extra` extra input channels (e.g. Fourier features);
    `num_classes` > 0: class-conditional, with K + 1 embeddings (the last one the null token)."""
    kind = cfg.kind
    if kind == "auto":
        kind = "mlp" if len(data_shape) == 1 else "unet"
    if kind == "mlp":
        if len(data_shape) != 1:
            raise ValueError(f"net.kind=mlp needs vector data, got shape {data_shape}; use net.kind=unet")

        return TimeMLP(data_shape[0] + in_extra, out_dim=data_shape[0], hidden=cfg.hidden, depth=cfg.depth,
                       emb_dim=cfg.emb_dim, t_scale=t_scale, num_classes=num_classes,
                       fourier_freqs=cfg.fourier_freqs, two_times=two_times)
    if cfg.fourier_freqs:
        raise ValueError(f"net.fourier_freqs is an option of net.kind=mlp (vectors), not of {kind}")
    if kind == "unet":
        if len(data_shape) != 3:
            raise ValueError(f"net.kind=unet needs image data (C, H, W), got shape {data_shape}; use net.kind=mlp")

        return UNet(data_shape, channels=cfg.channels, layers_per_block=cfg.layers_per_block,
                    attn_levels=cfg.attn_levels, dropout=cfg.dropout, in_extra=in_extra, t_scale=t_scale,
                    num_classes=num_classes, two_times=two_times)
    if kind == "diffusers":

        if not cfg.unet_config:
            raise ValueError("net.kind=diffusers needs net.unet_config (a UNet2DModel config as JSON);"
                             " `bench import` writes it")
        if in_extra or t_scale != 1.0 or num_classes or two_times:
            raise ValueError("net.kind=diffusers is built verbatim from its config: it takes no extra inputs,"
                             " time scaling or classes")
        return UNet.from_config(cfg.unet_config, data_shape)
    raise ValueError(f"unknown net.kind {cfg.kind!r}; choose from: auto, mlp, unet, diffusers")
