"""Metrics for 2-D toy data, computed on exact data (no feature extractor).

Mixture metrics (gaussians25 / gaussians8), after Srivastava et al. 2017 (VEEGAN) and
Lin et al. 2018 (PacGAN):
- hq_fraction: share of samples within 3 std of their nearest mixture mean.
- modes: number of means holding at least 20% of their expected share N/K of
  high-quality samples (N samples, K modes).
- mode_kl: KL(p || uniform(K)) of the histogram p of high-quality samples over modes
  (nats; 0 is perfectly balanced, log K is everything in one mode).

Distance (any toy data):
- swd: sliced Wasserstein-1 distance between the N samples and N fresh data samples,
  averaged over 512 random unit directions with a fixed seed, in data units.
  Sorting the 1-D projections gives each direction's exact W1 for equal sizes.
"""

from __future__ import annotations

import math

import torch

from bench.data.toy2d import Mixture

HQ_STDS = 3.0
COVER_SHARE = 0.2
SWD_PROJECTIONS = 512
SWD_SEED = 1234


def mixture_metrics(x: torch.Tensor, mixture: Mixture) -> dict[str, float]:
    x = x.double()
    means = mixture.means.double()
    dist, nearest = torch.cdist(x, means).min(dim=1)
    hq = dist < HQ_STDS * mixture.std
    k = len(means)
    counts = torch.bincount(nearest[hq], minlength=k).double()
    modes = int((counts >= COVER_SHARE * len(x) / k).sum())
    total = counts.sum()
    if total > 0:
        p = counts / total
        nz = p > 0
        kl = float((p[nz] * (p[nz] * k).log()).sum())
    else:
        kl = math.nan  # no high-quality sample: the histogram is undefined
    return {"modes": modes, "hq_fraction": float(hq.double().mean()), "mode_kl": kl}


def sliced_wasserstein(x: torch.Tensor, y: torch.Tensor, *, projections: int = SWD_PROJECTIONS,
                       seed: int = SWD_SEED) -> float:
    """Mean over random directions theta of W1(theta.x, theta.y); needs len(x) == len(y)."""
    if len(x) != len(y):
        raise ValueError(f"sliced_wasserstein needs equal sizes, got {len(x)} and {len(y)}")
    theta = torch.randn(projections, x.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    theta = theta / theta.norm(dim=1, keepdim=True)
    px = torch.sort(x.double() @ theta.T, dim=0).values
    py = torch.sort(y.double() @ theta.T, dim=0).values
    return float((px - py).abs().mean())
