"""Loading a dataset by its config (the names and their facts are in bench/config/datasets.py).

Every loaded dataset offers `shape` (one sample in model space), `len()`,
`batch(idx)` (model-space float tensor), `eval_batch(n)` (a fixed held-out batch in
model space) and `to_data(x)` (back to data space, where metrics are computed: the
same coordinates for toy data, uint8 images for image data). Labelled datasets also offer
`num_classes` (None when unlabelled) and `labels(idx)`, the classes of conditional training.
"""

from __future__ import annotations

import torch

from bench.config.run import DataConfig
from bench.data.images import load_images
from bench.config.datasets import get_dataset_info
from bench.data.toy2d import load_toy
from bench.errors import BenchError


def load_dataset(cfg: DataConfig):
    info = get_dataset_info(cfg.name)
    if info.kind == "toy2d":

        return load_toy(cfg.name, num_train=cfg.num_train, seed=cfg.seed)

    return load_images(cfg)


def check_labels(model: str, num_classes: int, data) -> None:
    """A conditional model (num_classes K > 0) needs data with exactly K classes; one-line error otherwise."""
    if not num_classes:
        return
    have = getattr(data, "num_classes", None)
    if have is None:
        raise BenchError(f"{data.name} has no class labels, and a conditional {model} (model.num_classes="
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
