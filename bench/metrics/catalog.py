"""Every metric module, imported here for its registrations, so a reader of the registry sees them all.

A new metric module goes on the import line below; that is the only edit outside its own file.
Read the metrics through this module (bench/results/schema.py and evaluate() do), never through
bench/metrics/registry.py alone, where a module nobody imported yet would be missing.
"""

from __future__ import annotations

from bench.metrics import conditional, image_facts, likelihood, spread, toy  # noqa: F401  (they register on import)
from bench.metrics.registry import (
    Metric,
    ToyTarget,
    get_metric,
    integer_columns,
    list_metrics,
    metric_columns,
    report_key,
    score_toy,
)

__all__ = ["Metric", "ToyTarget", "get_metric", "integer_columns", "list_metrics", "metric_columns", "report_key",
           "score_toy"]
