"""The metric registry: the schema is derived from it, bad facts fail at registration, and a new toy
metric (one file: a function and its register_metric call) is computed by evaluate() with no other edit."""

from __future__ import annotations

import json

import pytest
import torch

from bench.data.toy2d import load_toy
from bench.metrics import registry
from bench.metrics.catalog import get_metric, list_metrics, metric_columns
from bench.metrics.evaluate import evaluate
from bench.results.schema import COLUMNS, IMAGE, INTEGER, METRICS, TOY


@pytest.fixture
def scratch(monkeypatch):
    """A copy of the registry that a test may register into; the real one is restored afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def spread(x, target):
    """A stand-in toy metric: the samples' std over the reference's."""
    return float(x.double().std() / target.reference.double().std())


def facts(**over):
    base = dict(header="spread ratio", kind="toy", position=5, group="coverage", better="higher", fmt="{:.3f}",
                features="2-D coordinates", compute=spread)
    return {**base, **over}


def test_schema_is_derived_from_the_registry():
    assert TOY == ["modes", "hq_fraction", "mode_kl", "swd"]
    assert IMAGE[:3] == ["fid", "kid", "kid_std"] and IMAGE[-1] == "nn_dist"
    assert [m.column for m in METRICS] == ["fid", "kid", "is", "precision", "fd_classifier", "is_classifier", "nn_dist",
                                           "hq_fraction", "swd", "recall", "modes", "mode_kl", "cond_accuracy",
                                           "classes_covered", "bpd"]  # the report's order
    assert {c for m in list_metrics() for c in m.columns} <= set(COLUMNS)
    assert {"modes", "classes_covered", "classes_asked"} <= set(INTEGER)
    assert all(m.compute is not None for m in list_metrics("toy"))
    assert get_metric("kid").columns == ("kid", "kid_std") and get_metric("swd").direction == "lower"
    assert "Inception-v3 pool3" in get_metric("fid").features


@pytest.mark.parametrize("column, over, error", [
    ("swd", {}, "already registered"),
    ("kid_std", {}, "already registered"),
    ("Spread", {}, "lower_snake_case"),
    ("spread", {"header": "mode KL"}, "unique"),
    ("spread", {"kind": "pixels"}, "kind must be one of"),
    ("spread", {"better": "up"}, "better must be"),
    ("spread", {"position": 4}, "position 4 among toy metrics is 'swd'"),
    ("spread", {"fmt": "{:.3q}"}, "does not format"),
    ("spread", {"features": ""}, "which space"),
    ("spread", {"needs": ("gpu",)}, "needs must be among"),
    ("spread", {"compute": None}, "gives its function"),
    ("spread", {"needs": ("labels",)}, "may need only"),
    ("spread", {"kind": "image", "position": 9}, "gives its function"),
])
def test_registration_checks_its_facts(scratch, column, over, error):
    with pytest.raises((TypeError, ValueError), match=error):
        registry.register_metric(column, **facts(**over))


def test_a_new_toy_metric_is_computed_with_no_other_edit(scratch):
    registry.register_metric("spread", **facts(needs=("mixture",)))
    assert metric_columns("toy") == ["modes", "hq_fraction", "mode_kl", "swd", "spread"]
    data = load_toy("gaussians25", num_train=10, seed=0)
    x = data.sample_data(300, torch.Generator().manual_seed(1))
    metrics, notes = evaluate(data, x, seed=0, bootstrap=5)
    assert 0.8 < metrics["spread"] < 1.2 and "spread" in json.loads(metrics["bootstrap_ci"])
    roll = load_toy("swissroll", num_train=10, seed=0)
    metrics, notes = evaluate(roll, roll.sample_data(300, torch.Generator().manual_seed(1)), seed=0)
    assert "spread" not in metrics and notes == ["modes/hq_fraction/mode_kl/spread: swissroll is not a mixture"]


def test_a_toy_metric_writes_only_its_columns(scratch):
    registry.register_metric("spread", **facts(compute=lambda x, target: {"spread": 1.0, "swd": 0.0}))
    data = load_toy("gaussians8", num_train=10, seed=0)
    with pytest.raises(ValueError, match="not among its columns"):
        evaluate(data, data.sample_data(50, torch.Generator().manual_seed(1)), seed=0)
