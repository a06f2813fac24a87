"""A pixel dataset seen through an autoencoder: what a latent run trains on."""

from __future__ import annotations

import torch



class LatentData:
    """A pixel dataset seen through an autoencoder: what a latent run trains on. Batches are posterior
    samples s z, z ~ q(z | x), drawn with the harness's seeded global RNG (like random flips), so training
    stays exactly resumable; `to_data` decodes. Labels, length and name are the pixel data's."""

    mixture = None

    def __init__(self, pixels, stage):
        """`stage`: the autoencoder and its scaling factor (bench/runs/stage.py Stage): encode, decode, latent_shape."""
        self.pixels, self.stage = pixels, stage
        self.name = pixels.name

    @property
    def shape(self) -> tuple[int, ...]:
        return self.stage.latent_shape

    @property
    def num_classes(self):
        return self.pixels.num_classes

    def labels(self, idx: torch.Tensor) -> torch.Tensor:
        return self.pixels.labels(idx)

    def __len__(self) -> int:
        return len(self.pixels)

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.stage.encode(self.pixels.batch(idx)).cpu()

    def eval_batch(self, n: int) -> torch.Tensor:
        """The posterior means of the first n test images (a fixed held-out batch)."""
        x = self.pixels.eval_batch(n)
        return torch.cat([self.stage.encode(x[i:i + 500], mean=True).cpu() for i in range(0, len(x), 500)])

    def to_data(self, z: torch.Tensor) -> torch.Tensor:
        return self.pixels.to_data(self.stage.decode(z).cpu())
