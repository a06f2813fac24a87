"""The datasets bench knows: name, kind, shape, default preset and suite. Imports nothing from the rest of bench, so
every layer can ask."""

from __future__ import annotations

import dataclasses

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
