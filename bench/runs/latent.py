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

LATENT_FILE = "latent.json"  # in an autoencoder run: the scaling factor its weights give
STAGE_FILE = "autoencoder.json"  # in a latent run: the autoencoder it was trained on
SCALE_IMAGES = 5000  # training images whose posterior samples measure the scaling factor
SCALE_SEED = 0


def is_path(latent: str) -> bool:
    return latent != "autoencoder"


def latent_option(latent: str) -> str:
    """`--latent` as data.latent: 'autoencoder', or the absolute path of a run folder (a run's config.json then
    names its autoencoder wherever it is read from)."""
    return latent if not is_path(latent) else str(Path(latent).expanduser().resolve())


def autoencoder_parent(cfg):
    """The autoencoder RunConfig a latent run is built on: `data.latent = "autoencoder"` resolves the preset's
    autoencoder on the same data (in pixel space); a run folder gives its own config.json."""
    from bench.config.run import resolve_run_config
    from bench.data.datasets import get_dataset_info
    from bench.runs.folders import read_run_config
    import methods

    latent = cfg.data.latent
    if cfg.method == "autoencoder":
        raise BenchError("an autoencoder trains in pixel space: drop data.latent (--latent) from its run")
    path = Path(latent).expanduser()
    if is_path(latent) and not (path / "config.json").is_file():
        raise BenchError(f"data.latent={latent!r} is neither 'autoencoder' nor a run folder (no config.json there);"
                         " give --latent autoencoder or the folder `bench train autoencoder` wrote")
    if get_dataset_info(cfg.data.name).kind != "image":
        raise BenchError(f"data.latent needs image data; {cfg.data.name} is not an image dataset")
    if not is_path(latent):
        data = {f"data.{k}": v for k, v in dataclasses.asdict(cfg.data).items()}
        return resolve_run_config("autoencoder", model_cls=methods.get_method("autoencoder").Config,
                                  preset=cfg.preset, sets={**data, "data.latent": ""})
    ae = read_run_config(path)
    if ae.method != "autoencoder":
        raise BenchError(f"data.latent={latent}: that run is a {ae.method}, not an autoencoder")
    if ae.data.name != cfg.data.name or ae.data.resolution != cfg.data.resolution:
        raise BenchError(f"data.latent={latent}: that autoencoder was trained on {ae.data.name} at resolution"
                         f" {ae.data.resolution}, not on {cfg.data.name} at {cfg.data.resolution}")
    return dataclasses.replace(ae, data=dataclasses.replace(ae.data, root=cfg.data.root))


def autoencoder_dir(cfg, runs_dir: Path) -> Path:
    """Where the autoencoder of a latent run lives: the folder `data.latent` names, or its place in runs_dir."""
    from bench.runs.folders import run_dir_for

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
    from bench.data.images import to_model

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
    from bench.runs.checkpoint import atomic_write_text
    from bench.runs.folders import load_method, weights_sha256

    ae_dir = Path(ae_dir)
    ae, cfg, meta = load_method(ae_dir, device=device)
    if cfg.method != "autoencoder":
        raise BenchError(f"{ae_dir} holds a {cfg.method}, not an autoencoder")
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
    from bench.runs.checkpoint import atomic_write_text

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


class LatentData:
    """A pixel dataset seen through an autoencoder: what a latent run trains on. Batches are posterior
    samples s z, z ~ q(z | x), drawn with the harness's seeded global RNG (like random flips), so training
    stays exactly resumable; `to_data` decodes. Labels, length and name are the pixel data's."""

    mixture = None

    def __init__(self, pixels, stage: Stage):
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


def latent_bpd(method) -> tuple[dict, list[str]]:
    """A latent model's bits/dim: left empty. Its bound is on continuous scaled latents, not on the 8-bit
    pixels the pixel rows' bits/dim count (that would need the decoder's likelihood of the image)."""
    from methods.base import Method

    if type(method).bpd is Method.bpd:
        return {}, [f"bpd: {type(method).name} defines no likelihood"]
    return {}, ["bpd: empty for a latent model: its bound is on the autoencoder's continuous latents, not on the"
                " 8-bit pixels of the pixel rows' bits/dim"]


def latent_columns(stage: Stage, device: torch.device, spec, seed: int) -> dict[str, Any]:
    """A latent row's autoencoder, scaling factor and the decoder's own time per 100 samples (the sampler's
    time, sample_ms_per_100, already includes it)."""
    from bench.measure.timing import block_noise, measure

    z, _ = block_noise(stage.latent_shape, batch=spec.batch, seed=seed, device=device)
    t = measure(lambda: stage.decode(z), [], device, spec)
    from bench.runs.folders import training_seconds

    return {"latent": stage.run_dir.name, "latent_scale": stage.scale, "decode_ms_per_100": t.sample_ms,
            "latent_train_s": training_seconds(stage.run_dir)}


def reconstruction_floor(stage: Stage, data, n: int, *, seed: int) -> tuple[torch.Tensor, Any, dict[str, Any]]:
    """The second floor of a latent grid: the real test images of the data floor, encoded (a posterior sample)
    and decoded: what a perfect latent model would produce, so the best a latent row can score."""
    from bench.data.images import to_model
    from bench.metrics.evaluate import floor_samples
    from bench.runs.folders import training_seconds
    from bench.results.schema import FLOOR_METHOD

    x, labels = floor_samples(data, n, seed=seed, labelled=True)
    gen = torch.Generator().manual_seed(seed)
    out = [data.to_data(stage.decode(stage.encode(to_model(x[i:i + 500]), gen)).cpu()) for i in range(0, len(x), 500)]
    row = {"method": FLOOR_METHOD, "label": "reconstructions (floor)", "model": stage.run_dir.name, "seed": seed,
           "num_samples": len(x), "latent": stage.run_dir.name, "latent_scale": stage.scale,
           "latent_train_s": training_seconds(stage.run_dir),
           "weights_sha256": stage.weights,
           "notes": f"the data floor's real test images encoded (a posterior sample) and decoded by {stage.run_dir.name}:"
                    " the best a model in its latent space can score"}
    return torch.cat(out), labels, row


def stage_of_run(run_dir: Path, cfg, device: torch.device | str = "cpu", *, runs_dir: Path | None = None,
                 data=None) -> Stage:
    """The autoencoder of a latent run (parents live beside it unless `runs_dir` says otherwise), checked
    against the weights the run was trained on."""
    return load_stage(autoencoder_dir(cfg, Path(runs_dir) if runs_dir else Path(run_dir).parent), data, device,
                      for_run=Path(run_dir))
