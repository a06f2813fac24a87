"""Image denoiser: diffusers' UNet2DModel (sinusoidal time embedding, scale-shift
GroupNorm residual blocks, self-attention at chosen resolutions), wrapped so it is
called like every other denoiser: `net(x, t) -> tensor`, or `net(x, t, y)` when built with
`num_classes` K > 0 (UNet2DModel's class embedding with K + 1 entries, the last the null token)."""

from __future__ import annotations

import json

import torch
from diffusers import UNet2DModel
from torch import nn

from methods.nets.mlp import null_if_none


class UNet(nn.Module):
    def __init__(self, data_shape: tuple[int, int, int], *, channels: tuple[int, ...], layers_per_block: int,
                 attn_levels: tuple[int, ...], dropout: float = 0.0, in_extra: int = 0, t_scale: float = 1.0,
                 num_classes: int = 0, two_times: bool = False):
        super().__init__()
        c, h, w = data_shape
        if h % 2 ** (len(channels) - 1):
            raise ValueError(f"image size {h} is not divisible by 2^{len(channels) - 1} for {len(channels)} UNet levels;"
                             f" pad the data (data.resolution) or use fewer net.channels")
        bad = [i for i in attn_levels if not 0 <= i < len(channels)]
        if bad:
            raise ValueError(f"net.attn_levels {bad} out of range for {len(channels)} levels")
        down = tuple("AttnDownBlock2D" if i in attn_levels else "DownBlock2D" for i in range(len(channels)))
        up = tuple("AttnUpBlock2D" if i in attn_levels else "UpBlock2D" for i in reversed(range(len(channels))))
        self.t_scale = t_scale
        self.num_classes = num_classes
        self.net = UNet2DModel(
            sample_size=h, in_channels=c + in_extra, out_channels=c, block_out_channels=tuple(channels),
            layers_per_block=layers_per_block, down_block_types=down, up_block_types=up,
            norm_num_groups=min(32, channels[0]), dropout=dropout, resnet_time_scale_shift="scale_shift",
            attention_head_dim=None, num_class_embeds=num_classes + 1 if num_classes else None,
            # a second time (MeanFlow's t - r): UNet2DModel embeds class labels like a timestep and adds them
            class_embed_type="timestep" if two_times else None,
        )
        self.two_times = two_times

    @classmethod
    def from_config(cls, unet_config: str, data_shape: tuple[int, ...]) -> "UNet":
        """A UNet2DModel built verbatim from its config (JSON), for `net.kind=diffusers`; it must map
        data of `data_shape` to a tensor of the same shape and take no class labels."""
        try:
            config = json.loads(unet_config)
            net = UNet2DModel.from_config(config)
        except (json.JSONDecodeError, TypeError, ValueError) as e:
            raise ValueError(f"net.unet_config is not a UNet2DModel config ({e})") from None
        c, h, w = data_shape
        got = (net.config.in_channels, net.config.out_channels)
        if got != (c, c):
            raise ValueError(f"the UNet2DModel maps {got[0]} to {got[1]} channels, the data has {c}: only"
                             " eps-prediction UNets with fixed variance (out_channels = in_channels) fit")
        size = net.config.sample_size
        if (size if isinstance(size, int) else tuple(size)) not in (h, (h, w)):
            raise ValueError(f"the UNet2DModel has sample_size {size}, the data is {h}x{w}")
        if net.config.num_class_embeds or net.config.class_embed_type:
            raise ValueError("class-conditional UNet2DModels (num_class_embeds, class_embed_type) cannot be imported")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.t_scale, self.num_classes, self.net, self.two_times = 1.0, 0, net, False
        return self

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                t2: torch.Tensor | None = None) -> torch.Tensor:
        t = t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(-1)
        labels = null_if_none(y, x, self.num_classes) if self.num_classes else None
        if self.two_times:
            t2 = t2.reshape(-1).expand(x.shape[0]) if t2.numel() == 1 else t2.reshape(-1)
            labels = t2 * self.t_scale
        return self.net(x, t * self.t_scale, class_labels=labels).sample
