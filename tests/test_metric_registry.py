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
    base = dict(header="stand-in ratio", kind="toy", position=50, group="coverage", better="higher", fmt="{:.3f}",
                features="2-D coordinates", compute=spread)
    return {**base, **over}


def test_schema_is_derived_from_the_registry():
    assert TOY == ["modes", "hq_fraction", "mode_kl", "swd", "spread_error", "mode_spread"]
    assert IMAGE[:3] == ["fid", "kid", "kid_std"] and IMAGE[-1] == "nn_dist"
    assert [m.column for m in METRICS] == ["fid", "kid", "is", "precision", "fd_classifier", "is_classifier", "nn_dist",
                                           "hq_fraction", "swd", "spread_error", "recall", "modes", "mode_kl",
                                           "cond_accuracy",
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
    ("stand_in", {"header": "mode KL"}, "unique"),
    ("stand_in", {"kind": "pixels"}, "kind must be one of"),
    ("stand_in", {"better": "up"}, "better must be"),
    ("stand_in", {"position": 4}, "position 4 among toy metrics is 'swd'"),
    ("stand_in", {"fmt": "{:.3q}"}, "does not format"),
    ("stand_in", {"features": ""}, "which space"),
    ("stand_in", {"needs": ("gpu",)}, "needs must be among"),
    ("stand_in", {"compute": None}, "gives its function"),
    ("stand_in", {"needs": ("labels",)}, "may need only"),
    ("stand_in", {"kind": "image", "position": 9}, "gives its function"),
])
def test_registration_checks_its_facts(scratch, column, over, error):
    with pytest.raises((TypeError, ValueError), match=error):
        registry.register_metric(column, **facts(**over))


def test_a_new_toy_metric_is_computed_with_no_other_edit(scratch):
    registry.register_metric("stand_in", **facts(needs=("mixture",)))
    assert metric_columns("toy") == [*TOY, "stand_in"]  # after every toy metric registered before it
    data = load_toy("gaussians25", num_train=10, seed=0)
    x = data.sample_data(300, torch.Generator().manual_seed(1))
    metrics, notes = evaluate(data, x, seed=0, bootstrap=5)
    assert 0.8 < metrics["stand_in"] < 1.2 and "stand_in" in json.loads(metrics["bootstrap_ci"])
    roll = load_toy("swissroll", num_train=10, seed=0)
    metrics, notes = evaluate(roll, roll.sample_data(300, torch.Generator().manual_seed(1)), seed=0)
    assert "stand_in" not in metrics and notes == ["modes/hq_fraction/mode_kl/spread_error/stand_in: swissroll is not a mixture"]


def test_a_toy_metric_writes_only_its_columns(scratch):
    registry.register_metric("stand_in", **facts(compute=lambda x, target: {"stand_in": 1.0, "swd": 0.0}))
    data = load_toy("gaussians8", num_train=10, seed=0)
    with pytest.raises(ValueError, match="not among its columns"):
        evaluate(data, data.sample_data(50, torch.Generator().manual_seed(1)), seed=0)
