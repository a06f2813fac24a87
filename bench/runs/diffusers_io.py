"""diffusers models in and out: `bench import` and `bench export`.

import  a DDPMPipeline folder (model_index.json, unet/ and scheduler/, safetensors only) becomes a
        `ddpm` run: its UNet2DModel is built verbatim (`net.kind=diffusers`, the config in
        `net.unet_config`), its linear betas become T / beta_start / beta_end, and its weights are
        the run's checkpoint at step 0 (model and EMA alike: a pipeline holds one set of weights),
        with train.steps = 0: nothing is trained here. The run is complete, so every eps sampler
        and `bench compare --model <run folder>` sample it; its preset `diffusers-import-<sha>`
        names the weights, so two imports of different weights never share a run id.
export  a trained image `ddpm` run (its EMA weights) becomes a DDPMPipeline folder that
        `diffusers.DDPMPipeline.from_pretrained(DIR)` loads and samples, with a DDPMScheduler set
        like bench's `ddpm` sampler (fixed_small variance, no clipping).

What bench cannot represent is refused with one line, never approximated: schedules other than
linear betas, v- or x0-prediction, learned variances, zero-terminal-SNR rescaling, class-
conditional UNets. Sampling options of the pipeline's scheduler (clip_sample, timestep_spacing,
variance_type fixed_small / fixed_large) are not part of a model in bench: samplers choose them.
Pipelines map images to [-1, 1] as bench does (`x / 127.5 - 1`), so the data spaces agree; a UNet
whose sample_size differs from the dataset's native side gets `data.resolution = sample_size`
(MNIST's 28 padded to 32, as bench's own presets train it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from bench.files import atomic_write_text, check_writable, file_sha256
from bench.config.run import DataConfig, run_config_from_dict
from bench.data.load import load_dataset
from bench.config.datasets import get_dataset_info
from bench.errors import BenchError
import methods
from bench.results.provenance import environment
from bench.config.run import run_dir_for
from bench.runs.ema import EMA
from bench.runs.state import save_state  # the one checkpoint writer
from safetensors.torch import load_file
from bench.config.run import read_run_config
from diffusers import DDPMPipeline, DDPMScheduler
from bench.runs.folders import load_model
from methods.nets.unet import UNet

IMPORT_PRESET = "diffusers-import"
WEIGHTS = "diffusion_pytorch_model.safetensors"
_REFUSED = {  # scheduler config key -> (value bench represents, what to say otherwise)
    "beta_schedule": ("linear", "only linear betas are represented (bench's ddpm)"),
    "prediction_type": ("epsilon", "only eps-prediction is represented (bench's ddpm)"),
    "rescale_betas_zero_snr": (False, "zero-terminal-SNR rescaling is not represented"),
}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path.parent} is not a DDPMPipeline folder: it has no {path.name} ({what});"
                         " save one with pipeline.save_pretrained(DIR)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is corrupt ({e})") from None


def _resolve_source(source: str, log: Callable[[str], None]) -> Path:
    """A local folder, or a Hugging Face hub id (owner/name) downloaded when online."""
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BenchError(f"{path} is a file; give the DDPMPipeline folder (with model_index.json)")
        return path
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise BenchError(f"{source} does not exist; give a DDPMPipeline folder or a hub id such as google/ddpm-cifar10-32")
    try:
        from huggingface_hub import snapshot_download

        log(f"downloading {source} from the Hugging Face hub (safetensors and configs only)")
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # offline, unknown repo, gated: one line
        raise BenchError(f"cannot download {source} from the hub ({type(e).__name__}: {str(e).splitlines()[0]});"
                         " download the folder elsewhere and give its path") from None


def schedule_from_scheduler(config: dict[str, Any]) -> dict[str, Any]:
    """ddpm's T / beta_start / beta_end from a diffusers scheduler config, or a one-line error for
    what bench cannot represent."""
    if config.get("trained_betas") is not None:
        raise BenchError("the scheduler has trained_betas: only linear betas are represented (bench's ddpm)")
    for key, (want, why) in _REFUSED.items():
        got = config.get(key, want)
        if got != want:
            raise BenchError(f"the scheduler has {key}={got!r}: {why}; it cannot be imported")
    if str(config.get("variance_type", "fixed_small")).startswith("learned"):
        raise BenchError(f"the scheduler has variance_type={config['variance_type']!r}: learned variances are not"
                         " represented (bench's ddpm has fixed variances)")
    try:
        return {"T": int(config.get("num_train_timesteps", 1000)), "beta_start": float(config.get("beta_start", 1e-4)),
                "beta_end": float(config.get("beta_end", 0.02))}
    except (TypeError, ValueError) as e:
        raise BenchError(f"the scheduler config is malformed ({e})") from None


def _unet_config(folder: Path) -> dict[str, Any]:
    raw = _read_json(folder / "unet" / "config.json", "the UNet's config")
    if raw.get("_class_name", "UNet2DModel") != "UNet2DModel":
        raise BenchError(f"the pipeline's unet is a {raw['_class_name']}, not a UNet2DModel; only DDPMPipeline-style"
                         " pixel-space UNets can be imported")
    return {k: v for k, v in raw.items() if not k.startswith("_")}  # not the version stamps: they do not change weights


def _unet_weights(folder: Path) -> Path:
    """The pipeline's UNet weights file: safetensors only, since a pickled checkpoint could run code when loaded."""
    weights = folder / "unet" / WEIGHTS
    if not weights.exists():
        found = sorted(p.name for p in (folder / "unet").glob("*")) if (folder / "unet").is_dir() else []
        raise BenchError(f"{folder / 'unet'} has no {WEIGHTS} (found: {', '.join(found) or 'nothing'}); only"
                         " safetensors are read: save with safe_serialization=True")
    return weights


def import_pipeline(source: str, *, dataset: str, runs_dir: Path, data_root: str = "", out: Path | None = None,
                    log: Callable[[str], None] = print) -> Path:
    """Turn a DDPMPipeline folder (or hub id) into a complete `ddpm` run; returns its folder."""

    info = get_dataset_info(dataset)
    if info.kind != "image":
        raise BenchError(f"{dataset} is not an image dataset: diffusers UNet2DModels sample images")
    folder = _resolve_source(source, log)
    weights = _unet_weights(folder)
    unet = _unet_config(folder)
    schedule = schedule_from_scheduler(_read_json(folder / "scheduler" / "scheduler_config.json",
                                                  "the scheduler's config"))
    size = unet.get("sample_size")
    side = size if isinstance(size, int) else (size[0] if isinstance(size, (list, tuple)) and size else 0)
    native = info.sizes[0] if info.sizes else 0  # MNIST's 28, padded to a UNet's 32 as bench's presets do
    data_cfg = DataConfig(name=dataset, root=data_root, resolution=0 if side in (0, native) else int(side))
    data = load_dataset(data_cfg)
    sha = file_sha256(weights)
    cls = methods.get_model("ddpm")
    model = {"net": {"kind": "diffusers", "unet_config": json.dumps(unet, sort_keys=True)}, **schedule}
    cfg = run_config_from_dict({"method": "ddpm", "preset": f"{IMPORT_PRESET}-{sha[:12]}", "model": model,
                                "data": dataclasses.asdict(data_cfg), "train": {"steps": 0, "preview_samples": 0}},
                               cls.Config)
    try:
        cls.check_config(cfg.model)
        ddpm = cls(cfg.model, data.shape)
    except ValueError as e:
        raise BenchError(f"{folder} cannot be imported: {e}") from None

    state = load_file(weights)
    try:
        ddpm.net.net.load_state_dict(state)
    except RuntimeError as e:
        raise BenchError(f"{weights} does not fit the UNet's config ({str(e).splitlines()[0]})") from None
    run_dir = Path(out) if out is not None else run_dir_for(cfg, runs_dir)
    if (run_dir / "config.json").exists():

        if read_run_config(run_dir).run_id() == cfg.run_id():
            log(f"{run_dir} already holds this import")
            return run_dir
        raise BenchError(f"{run_dir} holds another run; choose another --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BenchError(f"{run_dir} exists and is not empty; choose another --out")
    check_writable(run_dir)
    with staged(run_dir) as tmp:
        atomic_write_text(tmp / "config.json", json.dumps(cfg.to_dict(), indent=2))
        env = {**environment("cpu"), "imported_from": str(source), "imported_weights_sha256": sha}
        atomic_write_text(tmp / "env.json", json.dumps(env, indent=2))
        ema = EMA(ddpm, 0.0)  # a pipeline's one set of weights is the EMA too
        save_state(tmp, 0, ddpm, {}, {}, ema, _NoStream(), cfg, data.shape, 0.0)
    log(f"imported {folder} as {run_dir} (ddpm, T={schedule['T']}, betas {schedule['beta_start']}..{schedule['beta_end']})")
    return run_dir


@contextlib.contextmanager
def staged(dst: Path):
    """A temporary folder beside `dst`, renamed to `dst` (new or empty) when the block succeeds and removed
    when it fails: an interrupted import or export never leaves half a folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-", dir=dst.parent))
    try:
        yield tmp
        if dst.exists():
            dst.rmdir()
        tmp.rename(dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _NoStream:
    """An imported run was never trained: no data order to save."""

    def state_dict(self) -> dict:
        return {}


def export_run(run_dir: Path, dst: Path, *, log: Callable[[str], None] = print) -> Path:
    """Write a trained image `ddpm` run (EMA weights) as a DDPMPipeline folder at `dst`."""

    model, cfg, meta = load_model(run_dir)
    if cfg.model_name != "ddpm":
        raise BenchError(f"{run_dir} is a {cfg.model_name} run: only ddpm runs export to a DDPMPipeline")
    if not isinstance(model.net, UNet):
        raise BenchError(f"{run_dir} has a {type(model.net).__name__} network: DDPMPipeline needs a UNet2DModel"
                         " (an image ddpm run)")
    if cfg.model.num_classes:
        raise BenchError(f"{run_dir} is class-conditional: DDPMPipeline samples unconditionally and passes no labels")
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise BenchError(f"{dst} exists and is not empty; choose another folder")
    check_writable(dst)
    scheduler = DDPMScheduler(**model.schedule.diffusers, variance_type="fixed_small", clip_sample=False,
                              prediction_type="epsilon", timestep_spacing="leading", steps_offset=0)
    with staged(dst) as tmp:
        DDPMPipeline(unet=model.net.net, scheduler=scheduler).save_pretrained(tmp, safe_serialization=True)
        atomic_write_text(tmp / "bench.json", json.dumps({"run": str(run_dir), "run_id": cfg.run_id(),
                                                         "checkpoint_step": meta["step"], "weights": "ema"}, indent=2))
    log(f"exported {run_dir} (step {meta['step']}, EMA weights) to {dst}: DDPMPipeline.from_pretrained({str(dst)!r})")
    return dst
