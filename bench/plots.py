"""Figures shared by the report and the training previews (matplotlib, Agg backend): a leaf, so that runs/ and
report/ draw with the same code."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402, F401  (the report modules draw with it, Agg set)
import numpy as np  # noqa: E402
import torch  # noqa: E402

TOY_LIMIT = 5.5  # axis half-width for 2-D scatters (gaussians25 spans +-4)


def scatter(ax, x: np.ndarray, title: str, *, limit: float = TOY_LIMIT) -> None:
    ax.scatter(x[:, 0], x[:, 1], s=1.0, alpha=0.5, linewidths=0)
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def image_grid(images: np.ndarray, ncol: int = 8) -> np.ndarray:
    """uint8 (N, C, H, W) -> one (rows*H, ncol*W, C) image with 1-px white gaps (torchvision's make_grid)."""
    from torchvision.utils import make_grid

    c = images.shape[1]
    grid = make_grid(torch.from_numpy(np.ascontiguousarray(images)), nrow=min(ncol, len(images)), padding=1,
                     pad_value=255).numpy().transpose(1, 2, 0)
    return grid[..., :1] if c == 1 else grid  # make_grid repeats one channel into three


def show_grid(ax, images: np.ndarray, title: str, ncol: int = 8) -> None:
    grid = image_grid(images, ncol)
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray" if grid.shape[2] == 1 else None)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
