"""Seeded in-memory 2-D toy distributions.

- gaussians25: means on the grid {-4,-2,0,2,4}^2, std 0.05 (the PacGAN/VEEGAN convention).
- gaussians8: 8 means on a circle of radius 2, std 0.02.
- swissroll: sklearn-style swiss roll in 2-D (x, z), scaled to about [-2.5, 2.5], noise 0.25/5.

Models train on the data as it is (no rescaling): with DDPM's linear betas the
noise levels that resolve a 0.05-wide mode then span tens of timesteps instead of
two or three, which trains markedly better at toy budgets. `to_data` is the
identity here and the uint8 quantisation for images.
"""

from __future__ import annotations

import dataclasses
import math

import torch


@dataclasses.dataclass(frozen=True)
class Mixture:
    """An equal-weight isotropic Gaussian mixture; `means` (K, 2)."""

    means: torch.Tensor
    std: float

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample_labelled(n, generator)[0]

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(samples, their component k): the class of a conditional toy model is the mixture component."""
        k = torch.randint(0, len(self.means), (n,), generator=generator)
        return self.means[k] + self.std * torch.randn(n, 2, generator=generator), k


def gaussians25() -> Mixture:
    grid = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    means = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1).reshape(-1, 2)
    return Mixture(means=means, std=0.05)


def gaussians8() -> Mixture:
    angles = torch.arange(8) * (2 * math.pi / 8)
    return Mixture(means=2.0 * torch.stack([angles.cos(), angles.sin()], dim=1), std=0.02)


def swissroll(n: int, generator: torch.Generator) -> torch.Tensor:
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    x = torch.stack([t * t.cos(), t * t.sin()], dim=1)
    return (x + 0.25 * torch.randn(n, 2, generator=generator)) / 5.0


@dataclasses.dataclass(frozen=True)
class ToyData:
    """A toy dataset: a seeded training set in memory, fresh samples for evaluation."""

    name: str
    mixture: Mixture | None  # None: not a mixture (no modes to count)
    x_train: torch.Tensor  # (N, 2)
    y_train: torch.Tensor | None = None  # mixture components (the classes), None when not a mixture

    @property
    def num_classes(self) -> int | None:
        """Classes of conditional training (mixture components); None: unlabelled (swissroll)."""
        return None if self.mixture is None else len(self.mixture.means)

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return self.y_train[idx]

    @property
    def shape(self) -> tuple[int, ...]:
        return (2,)

    def __len__(self) -> int:
        return len(self.x_train)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.x_train[idx]

    def eval_batch(self, n: int) -> torch.Tensor:
        """A fixed held-out batch: fresh samples from a seed no training set uses."""
        return self.sample_data(n, torch.Generator().manual_seed(987_654_321))

    def sample_data(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Fresh samples in data space (for metrics and floor rows)."""
        return self.mixture.sample(n, generator) if self.mixture is not None else swissroll(n, generator)

    def sample_labelled(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`sample_data` with the samples' classes (the same draws); None for unlabelled data."""
        if self.mixture is None:
            return swissroll(n, generator), None
        return self.mixture.sample_labelled(n, generator)

    def to_data(self, x_model: torch.Tensor) -> torch.Tensor:
        return x_model


def gaussians4() -> Mixture:
    """A smooth mixture: 4 modes at (+-1, +-1), std 0.5. Its score varies on the scale of 0.5 everywhere, so
    solvers reach their asymptotic orders at a few tens of NFE (25-Gaussians' 0.05-wide modes need far more)."""
    return Mixture(means=torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]), std=0.5)


def load_toy(name: str, *, num_train: int, seed: int) -> ToyData:
    mixture = {"gaussians25": gaussians25, "gaussians8": gaussians8, "gaussians4": gaussians4}.get(name, lambda: None)()
    data = ToyData(name=name, mixture=mixture, x_train=torch.empty(0, 2))
    x, y = data.sample_labelled(num_train, torch.Generator().manual_seed(seed))
    return dataclasses.replace(data, x_train=x, y_train=y)
