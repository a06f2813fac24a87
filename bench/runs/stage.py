"""Latent space: any model trains on and samples an autoencoder's scaled latents (`data.latent`).

    pixel data --E--> z ~ q(z | x) --x s--> the latent run's data      (training: LatentData.batch)
    noise --sampler--> z_hat --/ s--> D(z_hat) --> images                 (sampling: DecodedSampler)

s is the latent scaling factor, measured as latent diffusion sets it: 1 / std of the training latents
(posterior samples of the first SCALE_IMAGES training images, every coordinate pooled). It depends on
the autoencoder's weights only, so it is measured once per checkpoint and recorded in the
autoencoder's run folder (`latent.json`, with the weights' hash). A latent run records which
autoencoder weights it was trained on (`autoencoder.json`); a changed autoencoder is refused, never
mixed in. The decoder is part of sampling: samples are decoded before any metric, the timing includes
it (and times it alone too), and NFE counts the denoiser only (the decoder is no denoiser).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError
from bench.config.run import is_path
from bench.config.run import run_dir_for
from bench.data.images import to_model
from bench.files import atomic_write_text
from bench.runs.folders import load_model, weights_sha256

LATENT_FILE = "latent.json"  # in an autoencoder run: the scaling factor its weights give
STAGE_FILE = "autoencoder.json"  # in a latent run: the autoencoder it was trained on
SCALE_IMAGES = 5000  # training images whose posterior samples measure the scaling factor
SCALE_SEED = 0


def autoencoder_dir(cfg, runs_dir: Path) -> Path:
    """Where the autoencoder of a latent run lives: the folder `data.latent` names, or its place in runs_dir."""

    if is_path(cfg.data.latent):
        return Path(cfg.data.latent).expanduser()
    return run_dir_for(cfg.parent("autoencoder"), runs_dir)


@dataclasses.dataclass
class Stage:
    """A trained autoencoder (EMA weights, eval mode) and its scaling factor s."""

    ae: Any  # methods.autoencoder.Autoencoder
    scale: float
    run_dir: Path
    weights: str  # weights_sha256 of the checkpoint
    run_id: str

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(self.ae.latent_shape)

    @property
    def device(self) -> torch.device:
        return next(self.ae.parameters()).device

    @torch.no_grad()
    def encode(self, x: torch.Tensor, generator: torch.Generator | None = None, *, mean: bool = False) -> torch.Tensor:
        """s z, z ~ q(z | x) (the posterior mean with `mean`), of images in model space."""
        post = self.ae.encode(x.to(self.device))
        if mean:
            return post.mean * self.scale
        noise = torch.randn(post.mean.shape, generator=generator) if generator is not None else \
            torch.randn_like(post.mean)
        return (post.mean + post.std * noise.to(post.mean)) * self.scale

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """D(z / s) in model space."""
        return self.ae.decode(z.to(self.device) / self.scale)

    def describe(self) -> dict[str, Any]:
        return {"run": self.run_dir.name, "run_id": self.run_id, "weights_sha256": self.weights,
                "scaling_factor": self.scale, "latent_shape": list(self.latent_shape)}


def measure_scale(ae, data, *, n: int = SCALE_IMAGES, seed: int = SCALE_SEED, batch: int = 500) -> float:
    """1 / std of posterior samples of the first n training images, every coordinate pooled."""

    gen = torch.Generator().manual_seed(seed)
    device = next(ae.parameters()).device
    total, total_sq, count = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, min(n, len(data)), batch):
            idx = torch.arange(i, min(i + batch, n, len(data)))
            post = ae.encode(to_model(data.train_x[idx]).to(device))  # never flipped: no global RNG draw
            z = (post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(post.mean)).double()
            total, total_sq, count = total + float(z.sum()), total_sq + float((z * z).sum()), count + z.numel()
    var = total_sq / count - (total / count) ** 2
    if not var > 0:
        raise BenchError("the autoencoder's latents have zero variance: it collapsed; train it again")
    return float(1.0 / var ** 0.5)


def load_stage(ae_dir: Path, pixel_data, device: torch.device | str = "cpu", *, write: bool = True,
               for_run: Path | None = None) -> Stage:
    """The autoencoder of `ae_dir` with its scaling factor: read from latent.json when it was measured from
    these weights, else measured (and recorded when `write`: the main process). `for_run`: a latent run that
    must have been trained on these weights (checked first, before anything is measured)."""

    ae_dir = Path(ae_dir)
    ae, cfg, meta = load_model(ae_dir, device=device)
    if cfg.model_name != "autoencoder":
        raise BenchError(f"{ae_dir} holds a {cfg.model_name}, not an autoencoder")
    if pixel_data is not None and tuple(meta["data_shape"]) != tuple(pixel_data.shape):
        raise BenchError(f"{ae_dir} was trained on images of shape {meta['data_shape']}, not {list(pixel_data.shape)}")
    weights = weights_sha256(ae_dir, cfg)
    if for_run is not None:
        check_stage(for_run, ae_dir, weights)
    record = _read_json(ae_dir / LATENT_FILE)
    if record.get("weights_sha256") == weights and record.get("images") == SCALE_IMAGES:
        scale = float(record["scaling_factor"])
    elif pixel_data is None:
        raise BenchError(f"{ae_dir} has no {LATENT_FILE} for its latest weights: its scaling factor is measured on the"
                         " training images; run `bench compare` (or train a latent run) on it first")
    else:
        scale = measure_scale(ae, pixel_data)
        if write:
            atomic_write_text(ae_dir / LATENT_FILE, json.dumps(
                {"scaling_factor": scale, "weights_sha256": weights, "checkpoint_step": meta["step"],
                 "images": SCALE_IMAGES, "seed": SCALE_SEED,
                 "how": "1 / std of posterior samples of the first training images, all coordinates pooled"},
                indent=2))
    return Stage(ae=ae, scale=scale, run_dir=ae_dir, weights=weights, run_id=cfg.run_id())


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def record_stage(run_dir: Path, stage: Stage) -> None:
    """A latent run's autoencoder.json: the autoencoder weights it trains on (written once, at its start)."""

    atomic_write_text(Path(run_dir) / STAGE_FILE, json.dumps(stage.describe(), indent=2))


def check_stage(run_dir: Path, ae_dir: Path, weights: str) -> None:
    """A latent run is only used with the autoencoder weights it was trained on: one-line error otherwise."""
    recorded = _read_json(Path(run_dir) / STAGE_FILE)
    if not recorded:
        raise BenchError(f"{run_dir} is a latent run without {STAGE_FILE}: which autoencoder it was trained on is"
                         " unknown; delete it to train again")
    if recorded.get("weights_sha256") != weights:
        raise BenchError(f"the autoencoder {ae_dir} changed since {Path(run_dir).name} was trained on it"
                         f" (weights {recorded.get('weights_sha256')} then, {weights} now): delete"
                         f" {run_dir} to train it again on this autoencoder, or restore the autoencoder")


def stage_of_run(run_dir: Path, cfg, device: torch.device | str = "cpu", *, runs_dir: Path | None = None,
                 data=None) -> Stage:
    """The autoencoder of a latent run (parents live beside it unless `runs_dir` says otherwise), checked
    against the weights the run was trained on."""
    return load_stage(autoencoder_dir(cfg, Path(runs_dir) if runs_dir else Path(run_dir).parent), data, device,
                      for_run=Path(run_dir))
