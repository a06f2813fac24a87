"""The one sampling path of `bench compare` and `bench sample`: a cell's sampler built on a model, and its
samples drawn in seeded blocks (block b of `batch` samples uses seed * 1000003 + b)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import methods
from bench.errors import BenchError
from bench.measure.latent import DecodedSampler
from bench.shard import SINGLE, Shard
from bench.measure.timing import block_labels, block_noise, count_calls
from bench.runs.folders import call_sampler
from bench.metrics.evaluate import is_image_data
from bench.runs.folders import build_sampler

SAMPLES_KEPT = 2000  # samples per cell saved for figures (2-D points)
IMAGES_KEPT = 64  # images per cell saved for the report's sample grids (uint8)


def draw_samples(sampler, model: methods.Model, *, n: int, seed: int, batch: int, device: torch.device,
                 to_data: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 require_finite: bool = False, classes: str = "uniform", shard: Shard = SINGLE
                 ) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """n samples in blocks of `batch`, block b seeded (seed, b); returns (samples, NFE per sample: network
    evaluations per sample, the mean over blocks, rounded, for an adaptive solver whose calls vary, and
    the classes asked of a conditional model, else None).
    `to_data` maps each block to data space as it comes (uint8 images stay small in memory).
    `require_finite`: a NaN or inf sample is an error (before quantising, which would hide it).
    `shard`: under several processes each draws the blocks it owns (bench/shard.py) and all get all of them."""
    num_classes = model.num_classes(model.cfg)
    mine, error = {}, None
    for b in range(math.ceil(n / batch)):
        if not shard.owns(b) or error:
            continue
        noise, gen = block_noise(model.data_shape, batch=batch, seed=seed * 1_000_003 + b, device=device)
        y = block_labels(num_classes, batch=batch, seed=seed * 1_000_003 + b, classes=classes)
        with count_calls(model.denoisers(), batch=batch) as counter:
            x = call_sampler(sampler, noise, gen, y).cpu()
        if require_finite and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x.flatten(1))).any(1).sum())
            error = (f"{sampler.label} produced {bad} non-finite samples in block {b} (of {len(x)}): the"
                     " checkpoint or the sampler options diverge; nothing was written")
            continue
        mine[b] = (to_data(x) if to_data is not None else x, counter["evals"], y)
    shard.raise_together(error)
    out, calls, labels = (list(col) for col in zip(*shard.gather_blocks(mine)))
    if len(set(calls)) > 1 and not getattr(sampler, "adaptive", False):
        raise BenchError(f"{sampler.label}: network calls per batch varied ({sorted(set(calls))})")
    y = torch.cat(labels)[:n] if num_classes else None
    return torch.cat(out)[:n], round(sum(calls) / len(calls)), y


def save_diagnostics(model: methods.Model, path: Path) -> None:
    """The method's optional diagnostics (VDM: gamma(t)) as an .npz the report can plot."""
    arrays = model.diagnostics()
    if arrays:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{k: v.detach().cpu().numpy() for k, v in arrays.items()})


def kept(data, x: torch.Tensor) -> np.ndarray:
    """What samples/<label>.npz keeps for the report: a grid's worth of images, or 2-D points."""
    return x[:IMAGES_KEPT if is_image_data(data) else SAMPLES_KEPT].numpy()


def cell_sampler(model: methods.Model, name: str, steps: int, options, *, guidance=None, grid=None, stage=None):
    """The sampler of one cell: `name` at `steps` on `model`, with its options, guidance and time grid; for a
    latent model (`stage`: its autoencoder) followed by the decoder, so what is drawn and timed are images.
    `bench compare` and `bench sample` both build it here, so their samples of one cell are the same."""
    sampler = build_sampler(name, model, steps, options, guidance=guidance, grid=grid)
    return DecodedSampler(sampler, stage) if stage is not None else sampler
