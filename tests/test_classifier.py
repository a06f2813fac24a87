"""The MNIST-family domain classifier: input handling, caching with a version check, accuracy (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from bench.config.run import DataConfig
from bench.data.images import ImageData, resize
from bench.data.load import load_dataset
from bench.errors import BenchError
from bench.metrics import classifier as C


def tiny_digits(n: int = 256) -> ImageData:
    """Synthetic 'digits': class k is a bright k-th column band (learnable in one short epoch)."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = torch.randint(0, 40, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    for k in range(10):
        x[y == k, :, :, 2 + 2 * k:4 + 2 * k] = 255
    return ImageData("mnist", x, y, x[:100].clone(), y[:100].clone())


def test_padded_digits_are_cropped_back_exactly():
    x = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    assert torch.equal(C.to_input(resize(x, 32, pad=True)), C.to_input(x))
    assert C.to_input(torch.zeros(2, 1, 20, 20, dtype=torch.uint8)).shape == (2, 1, 28, 28)


def test_trained_once_then_loaded_while_the_version_and_data_match(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "EPOCHS", 1)
    data = tiny_digits()
    logs: list[str] = []
    first = C.load_or_train("mnist", data, cache_dir=tmp_path, device=torch.device("cpu"), log=logs.append)
    assert any(line.startswith("training the mnist classifier") for line in logs)
    record = json.loads((tmp_path / "classifier" / f"mnist-v{C.VERSION}.json").read_text())
    assert record["version"] == C.VERSION and record["test_accuracy"] == first.info["test_accuracy"]
    assert len(record["weights_sha256"]) == 64

    logs.clear()
    again = C.load_or_train("mnist", data, cache_dir=tmp_path, device=torch.device("cpu"), log=logs.append)
    assert logs == [], "a matching cached classifier is loaded, not retrained"
    x = data.test_x[:5]
    assert torch.equal(first.predict(x)[0], again.predict(x)[0])

    weights = tmp_path / "classifier" / f"mnist-v{C.VERSION}.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    C.load_or_train("mnist", data, cache_dir=tmp_path, device=torch.device("cpu"), log=logs.append)
    assert any(line.startswith("training") for line in logs), "a modified weights file is not trusted"

    logs.clear()
    monkeypatch.setattr(C, "VERSION", C.VERSION + 1)
    C.load_or_train("mnist", data, cache_dir=tmp_path, device=torch.device("cpu"), log=logs.append)
    assert any(line.startswith("training") for line in logs), "a new version trains again"

    logs.clear()
    other = tiny_digits(300)
    C.load_or_train("mnist", other, cache_dir=tmp_path, device=torch.device("cpu"), log=logs.append)
    assert any(line.startswith("training") for line in logs), "other training data trains again"


def test_classifier_inputs_are_checked():
    with pytest.raises(BenchError, match="choose from: mnist, fashion-mnist"):
        C.load_or_train("cifar10", tiny_digits(), cache_dir=None, device=torch.device("cpu"), log=lambda s: None)
    padded = ImageData("mnist", resize(tiny_digits().train_x, 32, pad=True), None, None, None)
    with pytest.raises(BenchError, match="native 1x28x28"):
        C.load_or_train("mnist", padded, cache_dir=None, device=torch.device("cpu"), log=lambda s: None)


@pytest.mark.slow
def test_the_mnist_classifier_reaches_99_percent_and_real_stackedmnist_covers_every_mode(shared_data, tmp_path):
    from bench.metrics import domain

    data = load_dataset(DataConfig(name="mnist", root=str(shared_data)))
    clf = C.load_or_train("mnist", data, cache_dir=tmp_path, device=torch.device("cpu"), log=print)
    assert clf.info["test_accuracy"] >= 0.99
    stacked = load_dataset(DataConfig(name="stackedmnist", root=str(shared_data), num_train=1000))
    m = domain.stacked_modes(domain.classify(clf, stacked.test_x)[0])  # 26,000 real triples
    assert m["modes"] == 1000 and m["mode_kl"] < 0.05
