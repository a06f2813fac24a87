"""Metrics behind one entry point with fixed result keys (columns in bench/schema.py).

`evaluate(data, samples, seed=...)` scores samples in data space and returns
(metrics, notes): a metric that does not apply is absent, and a note says why.
"""

from __future__ import annotations

import torch

from bench.metrics.toy import mixture_metrics, sliced_wasserstein

EVAL_SEED_OFFSET = 10_000  # fresh reference data never shares a seed with training data or samples


def evaluate(data, samples: torch.Tensor, *, seed: int) -> tuple[dict[str, float], list[str]]:
    if getattr(data, "mixture", None) is None and not hasattr(data, "sample_data"):
        return {}, ["image metrics are not implemented yet"]
    notes: list[str] = []
    reference = data.sample_data(len(samples), torch.Generator().manual_seed(EVAL_SEED_OFFSET + seed))
    metrics = {"swd": sliced_wasserstein(samples, reference)}
    if data.mixture is not None:
        metrics.update(mixture_metrics(samples, data.mixture))
    else:
        notes.append(f"modes/hq_fraction/mode_kl: {data.name} is not a mixture")
    return metrics, notes


def floor_samples(data, n: int, *, seed: int) -> torch.Tensor:
    """Real data drawn independently of the reference set: the best score a model can expect."""
    if not hasattr(data, "sample_data"):
        return data.test_x[:n]
    return data.sample_data(n, torch.Generator().manual_seed(2 * EVAL_SEED_OFFSET + seed))
