"""Inception metrics through torch-fidelity on a handful of real MNIST images (never a download).

These use ../shared/data's FID Inception weights (whose logits are zeroed) and skip without them.
"""

from __future__ import annotations

import pytest
import torch

from bench.config.run import DataConfig
from bench.data.load import load_dataset
from bench.errors import BenchError
from bench.metrics import features
from bench.metrics.evaluate import (
    MetricOptions,
    MetricResources,
    evaluate,
    floor_samples,
    image_evaluator,
)

N = 6  # images per set: Inception runs at a few images per second on a CPU
OPTIONS = MetricOptions(classifier=False, precision_recall="inception", kid_subset_size=N)


@pytest.fixture(scope="module")
def mnist(fid_weights):
    cfg = DataConfig(name="mnist", root=str(fid_weights.parents[1]))
    return cfg, load_dataset(cfg)


@pytest.fixture(scope="module")
def scored(mnist, fid_weights, tmp_path_factory):
    """One evaluator and the metrics of N real test images (the floor row of a tiny comparison)."""
    cfg, data = mnist
    cache = tmp_path_factory.mktemp("cache")
    logs: list[str] = []
    resources = MetricResources(fid_weights=str(fid_weights), cache_dir=str(cache))
    ev = image_evaluator(data, options=OPTIONS, resources=resources, num_samples=N, data_cfg=cfg,
                         device=torch.device("cpu"), log=logs.append)
    x = floor_samples(data, N, seed=0)
    metrics, notes = evaluate(data, x, seed=0, images=ev)
    return ev, x, metrics, notes, cache, logs


def test_zeroed_logits_make_is_unavailable_never_one(scored):
    ev, _, metrics, notes, _, _ = scored
    assert not ev.inception.has_logits
    assert "is" not in metrics and "is_std" not in metrics
    assert any(n.startswith("IS unavailable: the logits layer") for n in notes)
    assert ev.describe()["unavailable"]["is"].startswith("IS unavailable")


def test_real_images_get_every_inception_metric_with_named_feature_spaces(scored):
    ev, _, metrics, notes, _, _ = scored
    assert set(metrics) == {"fid", "kid", "kid_std", "precision", "recall", "inception_samples", "reference_samples"}
    assert metrics["fid"] > 0 and 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
    assert metrics["inception_samples"] == N and metrics["reference_samples"] == N
    info = ev.describe()
    assert info["precision_recall_features"] == "Inception pool3"
    assert info["labels"]["precision"] == "precision (Inception pool3, k=3)"
    assert len(info["inception"]["weights_sha256"]) == 64


def test_features_do_not_depend_on_the_batch_size(scored):
    ev, x, _, _, _, _ = scored
    ext = ev.inception
    old = ext.batch
    try:
        ext.batch = 1
        a = ext(x[:4])["2048"]
        ext.batch = 3
        b = ext(x[:4])["2048"]
    finally:
        ext.batch = old
    assert torch.allclose(a, b, atol=1e-4 * float(b.abs().max()))


def test_reference_features_are_cached_on_disk(scored, mnist, fid_weights):
    _, x, metrics, _, cache, logs = scored
    assert any("features of 6 training images" in line for line in logs)
    assert len(list((cache / "reference").glob("*.npy"))) == 1
    cfg, data = mnist
    again: list[str] = []
    resources = MetricResources(fid_weights=str(fid_weights), cache_dir=str(cache))
    ev = image_evaluator(data, options=OPTIONS, resources=resources, num_samples=N, data_cfg=cfg,
                         device=torch.device("cpu"), log=again.append)
    metrics2, _ = evaluate(data, x, seed=0, images=ev)
    assert not any("training images" in line for line in again), "the reference set must come from the cache"
    assert metrics2["fid"] == pytest.approx(metrics["fid"], rel=1e-6)


def test_without_weights_and_downloads_inception_metrics_are_empty_with_a_note(mnist, monkeypatch, tmp_path):
    monkeypatch.setattr(features, "_hub_file", lambda name: tmp_path / "absent.pth")
    cfg, data = mnist
    ev = image_evaluator(data, options=OPTIONS, resources=MetricResources(download=False), num_samples=N,
                         data_cfg=cfg, device=torch.device("cpu"), log=lambda s: None)
    metrics, notes = ev.evaluate(data.test_x[:N])
    assert metrics == {}
    assert any("Inception metrics unavailable: no Inception pool3 weights here and downloads are off" in n
               for n in notes)


def test_bad_weights_files_are_one_line_errors(tmp_path, mnist):
    cfg, data = mnist
    torch.save({"fc.weight": "not a tensor"}, tmp_path / "strings.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    torch.save({"x": torch.zeros(2)}, tmp_path / "other.pth")
    for name, message in [("missing.pth", "does not exist"), ("strings.pth", "not a state dict of tensors"),
                          ("garbage.pth", "not a state dict of tensors"), ("other.pth", "does not hold Inception")]:
        with pytest.raises(BenchError, match=message):
            image_evaluator(data, options=OPTIONS, resources=MetricResources(fid_weights=str(tmp_path / name)),
                            num_samples=N, data_cfg=cfg, device=torch.device("cpu"), log=lambda s: None)


def test_wrong_samples_are_rejected(scored, mnist):
    ev = scored[0]
    with pytest.raises(BenchError, match=r"uint8 \(N, 1, 28, 28\)"):
        ev.evaluate(torch.zeros(4, 1, 28, 28))
    with pytest.raises(BenchError, match=r"got uint8 \(4, 3, 28, 28\)"):
        ev.evaluate(torch.zeros(4, 3, 28, 28, dtype=torch.uint8))
