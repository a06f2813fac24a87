"""Dataset registry: names, their default preset and suite, and loaders.

Every loaded dataset offers `shape` (one sample in model space), `len()`,
`batch(idx)` (model-space float tensor), `eval_batch(n)` (a fixed held-out batch in
model space) and `to_data(x)` (back to data space, where metrics are computed: the
same coordinates for toy data, uint8 images for image data). Labelled datasets also offer
`num_classes` (None when unlabelled) and `labels(idx)`, the classes of conditional training.
"""

from __future__ import annotations

import dataclasses

import torch

from bench.config.run import DataConfig
from bench.errors import BenchError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str  # toy2d | image
    preset: str  # default training preset
    suite: str  # default benchmark suite
    description: str
    mixture: bool = False  # an isotropic Gaussian mixture: the exact-score oracle applies
    channels: int = 3  # image channels of its samples
    sizes: tuple[int, ...] = ()  # sample sides accepted for scoring (native, padded); () = any
    classifier: str = ""  # the digit classifier of its domain metrics (bench classifier), "" = none
    digit_triples: bool = False  # its modes are classifier digit triples, one per channel (StackedMNIST)


DATASETS = {d.name: d for d in [
    DatasetInfo("gaussians25", "toy2d", "toy", "toy", "25 Gaussians on a 5x5 grid, std 0.05 (25 modes)",
                mixture=True),
    DatasetInfo("gaussians8", "toy2d", "toy", "toy", "8 Gaussians on a circle of radius 2, std 0.02 (8 modes)",
                mixture=True),
    DatasetInfo("gaussians4", "toy2d", "toy", "toy", "4 overlapping Gaussians at (+-1, +-1), std 0.5: a smooth"
                " density for solver orders (4 modes)", mixture=True),
    DatasetInfo("swissroll", "toy2d", "toy", "toy", "2-D swiss roll (no modes: distance metrics only)"),
    DatasetInfo("mnist", "image", "mnist", "mnist-cpu", "MNIST digits, 1x28x28 (presets pad to 32)",
                channels=1, sizes=(28, 32), classifier="mnist"),
    DatasetInfo("fashion-mnist", "image", "mnist", "mnist-cpu", "Fashion-MNIST, 1x28x28 (presets pad to 32)",
                channels=1, sizes=(28, 32), classifier="fashion-mnist"),
    DatasetInfo("stackedmnist", "image", "stackedmnist", "stackedmnist",
                "three MNIST digits as RGB channels, 3x28x28 (1000 modes)", sizes=(28, 32), classifier="mnist",
                digit_triples=True),
    DatasetInfo("cifar10", "image", "cifar10", "cifar10", "CIFAR-10, 3x32x32", sizes=(32,)),
    DatasetInfo("folder", "image", "celebahq256", "folder",
                "folder:PATH, any folder of images (CelebA-HQ, LSUN exports), resized to data.resolution"),
]}


def get_dataset_info(name: str) -> DatasetInfo:
    if name.startswith("folder:"):
        return DATASETS["folder"]
    if name == "folder":
        raise BenchError("the folder dataset needs a path: --dataset folder:/path/to/images")
    try:
        return DATASETS[name]
    except KeyError:
        raise BenchError(f"unknown dataset {name!r}; choose from: {', '.join(list_datasets())}") from None


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def load_dataset(cfg: DataConfig):
    info = get_dataset_info(cfg.name)
    if info.kind == "toy2d":
        from bench.data.toy2d import load_toy

        return load_toy(cfg.name, num_train=cfg.num_train, seed=cfg.seed)
    from bench.data.images import load_images

    return load_images(cfg)


def check_labels(method: str, num_classes: int, data) -> None:
    """A conditional model (num_classes K > 0) needs data with exactly K classes; one-line error otherwise."""
    if not num_classes:
        return
    have = getattr(data, "num_classes", None)
    if have is None:
        raise BenchError(f"{data.name} has no class labels, and a conditional {method} (model.num_classes="
                         f"{num_classes}) needs them: use a labelled dataset (gaussians25, gaussians8, the MNIST"
                         " family, cifar10, a folder of class sub-folders) or drop model.num_classes")
    if have != num_classes:
        raise BenchError(f"model.num_classes={num_classes}, but {data.name} has {have} classes; set"
                         f" model.num_classes={have}")


class IndexStream:
    """Shuffled epochs of indices from an explicit generator; its state makes resume exact."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, batch_size
        self.generator = torch.Generator().manual_seed(seed)
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_start_state = self.generator.get_state()
        self.perm = torch.randperm(self.n, generator=self.generator)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > self.n:
            self._new_epoch()
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch_start_state": self.epoch_start_state, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["epoch_start_state"])
        self._new_epoch()
        self.pos = int(state["pos"])
