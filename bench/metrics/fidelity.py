"""Metrics on feature sets, computed by torch-fidelity's own functions (one convention everywhere).

- frechet_distance: ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)) of Gaussians fitted
  to two feature sets (FID in Inception pool3 space; `fd_classifier` in the domain
  classifier's space). A set against itself gives 0.
- kid: unbiased MMD^2 with the cubic polynomial kernel, mean and std over 100 random
  subsets (Binkowski et al. 2018); about 0 for two samples of one distribution.
- precision_recall: Kynkaanniemi et al. 2019 with k nearest neighbours: precision is the
  share of generated samples inside the real manifold (union of real k-NN balls), recall
  the share of real samples inside the generated one; equal-size sets.
- inception_score: exp(E_x KL(p(y|x) || p(y))) over 10 splits from logits (or log-probs).
"""

from __future__ import annotations

import numpy as np
import torch

KID_SUBSETS = 100
IS_SPLITS = 10
RNG_SEED = 2020  # torch-fidelity's default seed for KID subsets and IS shuffling


def statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    """Mean and covariance (float64) of a feature set, as torch-fidelity keeps them."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.double().cpu())


def frechet_distance(stats_1: dict[str, np.ndarray], stats_2: dict[str, np.ndarray]) -> float:
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    return fid_statistics_to_metric(stats_1, stats_2, verbose=False)[KEY_METRIC_FID]


def kid(features_1: torch.Tensor, features_2: torch.Tensor, *, subset_size: int) -> tuple[float, float]:
    """(mean, std) of KID; the subset size is capped at the smaller set."""
    from torch_fidelity.metric_kid import (
        KEY_METRIC_KID_MEAN,
        KEY_METRIC_KID_STD,
        kid_features_to_metric,
    )

    size = min(subset_size, len(features_1), len(features_2))
    out = kid_features_to_metric(features_1.double(), features_2.double(), kid_subsets=KID_SUBSETS,
                                 kid_subset_size=size, rng_seed=RNG_SEED, verbose=False)
    return out[KEY_METRIC_KID_MEAN], out[KEY_METRIC_KID_STD]


def precision_recall(generated: torch.Tensor, real: torch.Tensor, *, k: int) -> tuple[float, float]:
    """(precision, recall) of `generated` against `real` (first m = min sizes of each, equal sizes)."""
    from torch_fidelity.metric_prc import (
        KEY_METRIC_PRECISION,
        KEY_METRIC_RECALL,
        prc_features_to_metric,
    )

    m = min(len(generated), len(real))
    if m <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set, got {m}")
    out = prc_features_to_metric(generated[:m].float(), real[:m].float(), prc_neighborhood=k, prc_batch_size=10000,
                                 save_cpu_ram=True, verbose=False)
    return out[KEY_METRIC_PRECISION], out[KEY_METRIC_RECALL]


def inception_score(logits: torch.Tensor, *, splits: int = IS_SPLITS) -> tuple[float, float]:
    """(mean, std) over `splits` shuffled splits; `logits` may be log-probabilities (same softmax)."""
    from torch_fidelity.metric_isc import (
        KEY_METRIC_ISC_MEAN,
        KEY_METRIC_ISC_STD,
        isc_features_to_metric,
    )

    out = isc_features_to_metric(logits.double().cpu(), splits=splits, shuffle=True, rng_seed=RNG_SEED)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]
