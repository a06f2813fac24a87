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

Each registers below (bench/metrics/registry.py); evaluate() computes every registered toy metric.
"""

from __future__ import annotations

import math

import torch

from bench.data.toy2d import Mixture
from bench.metrics.registry import register_metric

HQ_STDS = 3.0
COVER_SHARE = 0.2
SWD_PROJECTIONS = 512
SWD_SEED = 1234
MODE_SPACE = ("2-D coordinates: high-quality samples (within 3 std) per nearest mixture mean; StackedMNIST:"
              " digit triples read by bench's MNIST classifier")


def _histogram(x: torch.Tensor, mixture: Mixture) -> tuple[torch.Tensor, torch.Tensor]:
    """(which samples are high quality, the high-quality samples of each mode), in float64."""
    means = mixture.means.double()
    dist, nearest = torch.cdist(x.double(), means).min(dim=1)
    hq = dist < HQ_STDS * mixture.std
    return hq, torch.bincount(nearest[hq], minlength=len(means)).double()


def covered_modes(x: torch.Tensor, mixture: Mixture) -> int:
    _, counts = _histogram(x, mixture)
    return int((counts >= COVER_SHARE * len(x) / len(counts)).sum())


def hq_fraction(x: torch.Tensor, mixture: Mixture) -> float:
    hq, _ = _histogram(x, mixture)
    return float(hq.double().mean())


def mode_kl(x: torch.Tensor, mixture: Mixture) -> float:
    _, counts = _histogram(x, mixture)
    total = counts.sum()
    if total == 0:
        return math.nan  # no high-quality sample: the histogram is undefined
    p = counts / total
    nz = p > 0
    return float((p[nz] * (p[nz] * len(counts)).log()).sum())


def mixture_metrics(x: torch.Tensor, mixture: Mixture) -> dict[str, float]:
    """The three mixture metrics at once (tests and quick checks; evaluate() goes through the registry)."""
    return {"modes": covered_modes(x, mixture), "hq_fraction": hq_fraction(x, mixture), "mode_kl": mode_kl(x, mixture)}


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


register_metric("modes", header="modes covered", kind="toy", position=1, group="coverage", better="higher",
                fmt="{:.0f}", features=MODE_SPACE, needs=("mixture",), integer=("modes",),
                compute=lambda x, target: covered_modes(x, target.mixture))
register_metric("hq_fraction", header="high-quality fraction", kind="toy", position=2, group="quality",
                better="higher", fmt="{:.3f}", features="2-D coordinates: distance to the nearest mixture mean",
                needs=("mixture",), compute=lambda x, target: hq_fraction(x, target.mixture))
register_metric("mode_kl", header="mode KL", kind="toy", position=3, group="coverage", better="lower", fmt="{:.3f}",
                features=MODE_SPACE, needs=("mixture",), compute=lambda x, target: mode_kl(x, target.mixture))
register_metric("swd", header="sliced W1 to data", kind="toy", position=4, group="quality", better="lower",
                fmt="{:.3f}", log_scale=True, features="2-D coordinates, data units: 512 fixed random directions",
                compute=lambda x, target: sliced_wasserstein(x, target.reference))
