"""Image datasets from local files: shapes, value conventions, and clear errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from bench.config.run import DataConfig
from bench.data.images import read_idx, to_model, to_uint8
from bench.data.load import load_dataset
from bench.config.datasets import get_dataset_info
from bench.errors import BenchError


def test_uint8_levels_round_trip_exactly():
    levels = torch.arange(256, dtype=torch.uint8)
    x = to_model(levels)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), levels)
    assert torch.equal(to_uint8(torch.tensor([-5.0, 5.0])), torch.tensor([0, 255], dtype=torch.uint8))


def test_mnist_from_the_shared_folder(shared_data):
    d = load_dataset(DataConfig(name="mnist", root=str(shared_data)))
    assert d.shape == (1, 28, 28) and len(d) == 60_000 and len(d.test_x) == 10_000
    assert d.train_x.dtype == torch.uint8 and d.train_y[:3].tolist() == [5, 0, 4]
    b = d.batch(torch.arange(8))
    assert b.dtype == torch.float32 and b.min() >= -1 and b.max() <= 1
    padded = load_dataset(DataConfig(name="mnist", root=str(shared_data), resolution=32))
    assert padded.shape == (1, 32, 32)
    assert torch.equal(padded.train_x[:, :, 2:30, 2:30], d.train_x) and padded.train_x[:, :, :2].max() == 0


def test_fashion_mnist_reads_gzip_from_a_read_only_root(shared_data):
    d = load_dataset(DataConfig(name="fashion-mnist", root=str(shared_data)))
    assert d.shape == (1, 28, 28) and len(d) == 60_000 and int(d.train_y.max()) == 9


def test_stackedmnist_channels_are_independent_digits_with_matching_labels(shared_data):
    mnist = load_dataset(DataConfig(name="mnist", root=str(shared_data)))
    d = load_dataset(DataConfig(name="stackedmnist", root=str(shared_data), num_train=2000, seed=3))
    assert d.shape == (3, 28, 28) and len(d) == 2000
    again = load_dataset(DataConfig(name="stackedmnist", root=str(shared_data), num_train=2000, seed=3))
    assert torch.equal(d.train_x, again.train_x), "the training set must be fixed by its seed"
    # every channel is some MNIST digit whose label matches the label's digit
    lookup = {bytes(img.numpy().tobytes()): int(y) for img, y in zip(mnist.train_x[:, 0], mnist.train_y)}
    for img, label in zip(d.train_x[:20], d.train_y[:20]):
        digits = [lookup[bytes(img[c].numpy().tobytes())] for c in range(3)]
        assert 100 * digits[0] + 10 * digits[1] + digits[2] == int(label)
    assert len(set(d.train_y.tolist())) > 800, "2000 random triples should hit most of the 1000 modes"


def test_folder_dataset(tmp_path):
    from PIL import Image

    for i in range(20):
        Image.fromarray(np.full((40, 30, 3), i * 10, dtype=np.uint8)).save(tmp_path / f"img{i:02d}.png")
    d = load_dataset(DataConfig(name=f"folder:{tmp_path}", resolution=16))
    assert d.shape == (3, 16, 16) and len(d) == 18 and len(d.test_x) == 2
    with pytest.raises(BenchError, match="data.resolution"):
        load_dataset(DataConfig(name=f"folder:{tmp_path}"))


@pytest.mark.parametrize("cfg,message", [
    (DataConfig(name="mnist"), "needs a data folder: pass --data-dir"),
    (DataConfig(name="mnist", root="/no/such/dir"), "does not exist"),
    (DataConfig(name="cifar10", root="/"), "cifar-10-batches-py not found"),
    (DataConfig(name="folder:/no/such/dir", resolution=32), "does not exist"),
])
def test_missing_data_is_a_clear_error(cfg, message):
    with pytest.raises(BenchError, match=message):
        load_dataset(cfg)


def test_missing_mnist_files_are_named(tmp_path):
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    with pytest.raises(BenchError, match="train-images-idx3-ubyte, train-labels-idx1-ubyte"):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))


def test_corrupt_idx_files_are_reported(tmp_path):
    good = bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(range(5))
    (tmp_path / "a").write_bytes(good)
    assert read_idx(tmp_path / "a").tolist() == [0, 1, 2, 3, 4]
    with gzip.open(tmp_path / "b.gz", "wb") as f:
        f.write(good)
    assert read_idx(tmp_path / "b.gz").tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "c").write_bytes(good[:-2])
    with pytest.raises(BenchError, match="truncated"):
        read_idx(tmp_path / "c")
    (tmp_path / "d").write_bytes(b"not an idx file")
    with pytest.raises(BenchError, match="not an unsigned-byte idx file"):
        read_idx(tmp_path / "d")


def test_dataset_names():
    assert get_dataset_info("folder:/x").name == "folder"
    with pytest.raises(BenchError, match="folder:/path"):
        get_dataset_info("folder")
    with pytest.raises(BenchError, match="choose from: cifar10, fashion-mnist"):
        get_dataset_info("nope")
