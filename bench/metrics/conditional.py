"""Metrics of a class-conditional model's samples against the classes they were asked for.

- cond_accuracy: the share of samples assigned to their requested class. Toys: the nearest
  mixture mean, wherever the sample lies (the class is the mixture component); MNIST family: the bench classifier's argmax
  (StackedMNIST: the argmax digit triple of 1000). Real labelled data scores the classifier's own
  accuracy here, which is the ceiling a model can reach in this column.
- classes_covered: the per-class analogue of `modes`. A requested class c is covered when at least
  COVER_SHARE of the samples asked of c land in c (toys: within 3 std of mean c, the high-quality
  rule of `modes`). Reported out of the classes that were asked for.
Both register below (bench/metrics/registry.py); evaluate() and ImageEvaluator compute them.
"""

from __future__ import annotations

import torch

from bench.metrics.registry import register_metric
from bench.metrics.toy import COVER_SHARE, HQ_STDS

CLASS_SPACE = ("toys: the nearest mixture mean; MNIST family: the argmax of bench's classifier (StackedMNIST: the"
               " digit triple)")


def conditional_metrics(assigned: torch.Tensor, labels: torch.Tensor, ok: torch.Tensor | None = None) -> dict[str, float]:
    """`assigned`: the class each sample is assigned to; `labels`: the class it was asked for; `ok`: whether
    it counts towards covering that class (toys: high quality, as for `modes`), all True when None."""
    labels = labels.long()
    hit = assigned.long() == labels
    landed = hit & (ok if ok is not None else torch.ones_like(labels, dtype=torch.bool))
    asked = labels.unique()
    covered = sum(int(landed[labels == c].double().mean() >= COVER_SHARE) for c in asked)
    return {"cond_accuracy": float(hit.double().mean()), "classes_covered": covered, "classes_asked": len(asked)}


def toy_conditional(x: torch.Tensor, labels: torch.Tensor, mixture) -> dict[str, float]:
    dist, nearest = torch.cdist(x.double(), mixture.means.double()).min(dim=1)
    return conditional_metrics(nearest, labels, dist < HQ_STDS * mixture.std)


register_metric("cond_accuracy", header="conditional accuracy", kind="conditional", position=1, group="quality",
                better="higher", fmt="{:.3f}", features=CLASS_SPACE, needs=("labels",))
register_metric("classes_covered", header="classes covered", kind="conditional", position=2, group="coverage",
                better="higher", fmt="{:.0f}", features=CLASS_SPACE, needs=("labels",), extra=("classes_asked",),
                integer=("classes_covered", "classes_asked"))
