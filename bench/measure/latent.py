"""Latent models at measurement time: the decoder as part of sampling, the latent columns and the reconstruction
floor."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bench.data.images import to_model
from bench.measure.timing import block_noise, measure
from bench.metrics.evaluate import floor_samples
from bench.results.schema import FLOOR
from bench.runs.folders import training_seconds
from bench.runs.stage import Stage, autoencoder_dir, check_stage, load_stage
from methods.base import Model


@dataclasses.dataclass
class DecodedSampler:
    """A latent model's sampler followed by the decoder: what the runner draws and times, so the decoder's
    cost is in every ms per 100 samples. NFE stays the inner sampler's (the decoder is no denoiser)."""

    inner: Any
    stage: Stage

    def __getattr__(self, name: str):
        if name in ("inner", "stage"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __call__(self, noise: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.stage.decode(self.inner(noise, **kwargs))


def load_stages(run_cfgs: dict, run_dirs: dict, *, runs_dir: Path, data, device: torch.device, shard) -> dict:
    """{cell: its Stage, or None in pixel space}, one Stage per autoencoder; each latent run is checked to have
    been trained on these autoencoder weights. The main process measures (and records) a scaling factor first."""
    out, by_dir = {}, {}
    for cell, cfg in run_cfgs.items():
        if not cfg.data.latent:
            out[cell] = None
            continue
        ae_dir = autoencoder_dir(cfg, runs_dir).resolve()
        if ae_dir not in by_dir:
            with shard.main_first():
                by_dir[ae_dir] = load_stage(ae_dir, data, device, write=shard.main)
        check_stage(run_dirs[cell], ae_dir, by_dir[ae_dir].weights)
        out[cell] = by_dir[ae_dir]
    return out


def latent_bpd(model) -> tuple[dict, list[str]]:
    """A latent model's bits/dim: left empty. Its bound is on continuous scaled latents, not on the 8-bit
    pixels the pixel rows' bits/dim count (that would need the decoder's likelihood of the image)."""

    if type(model).bpd is Model.bpd:
        return {}, [f"bpd: {type(model).name} defines no likelihood"]
    return {}, ["bpd: empty for a latent model: its bound is on the autoencoder's continuous latents, not on the"
                " 8-bit pixels of the pixel rows' bits/dim"]


def latent_columns(stage: Stage, device: torch.device, spec, seed: int) -> dict[str, Any]:
    """A latent row's autoencoder, scaling factor and the decoder's own time per 100 samples (the sampler's
    time, sample_ms_per_100, already includes it)."""

    z, _ = block_noise(stage.latent_shape, batch=spec.batch, seed=seed, device=device)
    t = measure(lambda: stage.decode(z), [], device, spec)

    return {"latent": stage.run_dir.name, "latent_scale": stage.scale, "decode_ms_per_100": t.sample_ms,
            "latent_train_s": training_seconds(stage.run_dir)}


def reconstruction_floor(stage: Stage, data, n: int, *, seed: int) -> tuple[torch.Tensor, Any, dict[str, Any]]:
    """The second floor of a latent grid: the real test images of the data floor, encoded (a posterior sample)
    and decoded: what a perfect latent model would produce, so the best a latent row can score."""

    x, labels = floor_samples(data, n, seed=seed, labelled=True)
    gen = torch.Generator().manual_seed(seed)
    out = [data.to_data(stage.decode(stage.encode(to_model(x[i:i + 500]), gen)).cpu()) for i in range(0, len(x), 500)]
    row = {"sampler": FLOOR, "label": "reconstructions (floor)", "model": stage.run_dir.name, "seed": seed,
           "num_samples": len(x), "latent": stage.run_dir.name, "latent_scale": stage.scale,
           "latent_train_s": training_seconds(stage.run_dir),
           "weights_sha256": stage.weights,
           "notes": f"the data floor's real test images encoded (a posterior sample) and decoded by {stage.run_dir.name}:"
                    " the best a model in its latent space can score"}
    return torch.cat(out), labels, row
