"""Per-mode spread: whether each covered mode of a Gaussian mixture is drawn at the right width.

The high-quality fraction counts samples within 3 std of a mean, and the mode metrics count where they
land, so a sampler that draws every mode too narrow (a collapse toward the means, as too few steps or a
low-temperature sampler give) scores perfectly on both. Within each covered mode k (its high-quality
samples, assigned to their nearest mean; covered as in `modes`), the sample standard deviation s_k over
the mode's own std under the same 3-std cut,

    r_k = s_k / (sigma * sqrt(c)),  c = (1 - (1 + a) e^-a) / (1 - e^-a),  a = 3^2 / 2,

c being the per-coordinate variance of a 2-D isotropic Gaussian truncated to radius 3 sigma, over sigma^2.
Columns: `spread_error` = mean_k |log r_k| (0 is the right width; lower is better) and `mode_spread` =
exp(mean_k log r_k), the geometric-mean ratio (below 1: too narrow, above 1: too wide). Where the modes
overlap (gaussians4), the nearest-mean split cuts them too and the data floor's own score is the reference.
"""

from __future__ import annotations

import math

import torch

from bench.metrics.registry import ToyTarget, register_metric
from bench.metrics.toy import COVER_SHARE, HQ_STDS

A = HQ_STDS ** 2 / 2
TRUNCATED_VAR = (1 - (1 + A) * math.exp(-A)) / (1 - math.exp(-A))  # per coordinate, in units of sigma^2


def spread_ratios(x: torch.Tensor, target: ToyTarget) -> torch.Tensor:
    """r_k of every covered mode (empty when none is covered)."""
    mixture = target.mixture
    means = mixture.means.double()
    x = x.double()
    dist, nearest = torch.cdist(x, means).min(dim=1)
    hq = dist < HQ_STDS * mixture.std
    counts = torch.bincount(nearest[hq], minlength=len(means))
    covered = (counts >= COVER_SHARE * len(x) / len(means)) & (counts >= 2)
    ratios = []
    for k in torch.nonzero(covered).flatten().tolist():
        pts = x[hq & (nearest == k)]
        s = pts.var(dim=0, unbiased=False).mean().sqrt()
        ratios.append(float(s) / (mixture.std * math.sqrt(TRUNCATED_VAR)))
    return torch.tensor(ratios, dtype=torch.float64)


def mode_spread(x: torch.Tensor, target: ToyTarget) -> dict[str, float]:
    logs = spread_ratios(x, target).log()
    if not len(logs):
        return {"spread_error": math.nan, "mode_spread": math.nan}  # no covered mode: no width to measure
    return {"spread_error": float(logs.abs().mean()), "mode_spread": float(logs.mean().exp())}


register_metric("spread_error", header="per-mode spread error", kind="toy", position=5, group="quality",
                better="lower", fmt="{:.3f}", extra=("mode_spread",), needs=("mixture",), compute=mode_spread,
                features="2-D coordinates: high-quality samples of each covered mode, std over the mode's own")
