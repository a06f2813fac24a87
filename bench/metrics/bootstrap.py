"""Bootstrap intervals over samples: how much a row's metric moves when its samples are redrawn.

Within one run, the samples are resampled with replacement `resamples` times (a fixed seed per
row) and each metric is recomputed on every resample; the interval is the percentile interval
(2.5%, 97.5%). It measures sampling noise only, not training noise (the seeds axis does that).
Features are extracted once and resampled (images: FID on Inception pool3, FD on classifier
features), never re-extracted. Resampling duplicates points, which lowers a set's diversity: the
intervals of distances such as FID sit slightly above the full-set value.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import torch

LEVEL = 0.95
BOOTSTRAP_SEED = 777


def interval(fn: Callable[[torch.Tensor], dict[str, float]], x: torch.Tensor, *, resamples: int,
             seed: int = BOOTSTRAP_SEED) -> dict[str, list[float]]:
    """{metric: [lo, hi]}: the percentile interval of `fn` over `resamples` resamples of the rows of `x`."""
    gen = torch.Generator().manual_seed(seed)
    values: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = torch.randint(len(x), (len(x),), generator=gen)
        for k, v in fn(x[idx]).items():
            values.setdefault(k, []).append(float(v))
    lo, hi = 100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2
    return {k: [float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))] for k, v in values.items()
            if np.isfinite(v).any()}


def columns(ci: dict[str, list[float]], resamples: int) -> dict:
    """The results columns of a bootstrap: `bootstrap` (resamples) and `bootstrap_ci` (JSON)."""
    if not resamples:
        return {}
    return {"bootstrap": resamples, "bootstrap_ci": json.dumps(ci, sort_keys=True)}
