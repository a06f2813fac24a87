"""FIR resampling with the (1, 3, 3, 1) kernel of NCSN++ / StyleGAN2, as depthwise convolutions.

The same maths as upfirdn2d (diffusers' `downsample_2d` / `upsample_2d`, checked equal in
tests/test_ddgan_nets.py) but one grouped convolution per call instead of a convolution over
batch * channels single-channel images, which is about ten times faster on a CPU.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_K1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
KERNEL = torch.outer(_K1, _K1) / torch.outer(_K1, _K1).sum()  # sums to 1


def _kernel(x: torch.Tensor, gain: float) -> torch.Tensor:
    return (gain * KERNEL).to(x).expand(x.shape[1], 1, 4, 4)


def fir_downsample(x: torch.Tensor) -> torch.Tensor:
    """Blur with the FIR kernel and keep every second pixel: (B, C, H, W) -> (B, C, H/2, W/2)."""
    return F.conv2d(F.pad(x, (1, 1, 1, 1)), _kernel(x, 1.0), stride=2, groups=x.shape[1])


def fir_upsample(x: torch.Tensor) -> torch.Tensor:
    """Zero-insert by 2 and blur with the FIR kernel (gain 4): (B, C, H, W) -> (B, C, 2H, 2W)."""
    return F.conv_transpose2d(x, _kernel(x, 4.0), stride=2, padding=1, groups=x.shape[1])
