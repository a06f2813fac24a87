"""`bench evaluate`: a sample file scored with every metric that applies, as a one-row results folder with compare's
columns."""

from __future__ import annotations
import datetime
import json
from pathlib import Path
from typing import Callable
import torch
from bench.config.run import DataConfig
from bench.config.presets import load_preset
from bench.config.values import build
from bench.config.spec import load_suite
from bench.data.load import load_dataset
from bench.config.datasets import get_dataset_info
from bench.errors import BenchError
from bench.files import atomic_write_text, check_writable, file_sha256
from bench.metrics.evaluate import MetricOptions, evaluate, image_evaluator
from bench.config.metric_options import MetricResources, validate_options
from bench.results.schema import RENAMED
from bench.results.provenance import device_name, git_sha, resolve_device, versions
from bench.results.sample_files import read_meta, read_samples
from bench.results.store import write_results


def eval_data_config(dataset: str, shape: tuple[int, ...], data_dir: str):
    """The data a sample file is scored against: the dataset's preset data section (e.g. StackedMNIST's
    fixed training set) at the samples' resolution; a one-line error if the shape cannot be that data."""

    info = get_dataset_info(dataset)
    channels, sizes = info.channels, info.sizes
    c, h = shape[0], shape[1]
    if c != channels or (sizes and h not in sizes):
        allowed = " or ".join(f"{channels} x {s} x {s}" for s in sizes) if sizes else f"{channels} x S x S"
        raise BenchError(f"{dataset} samples are {allowed}, got {' x '.join(map(str, shape))}")
    values = {**load_preset(info.preset, "").get("data", {}), "name": dataset, "root": data_dir, "resolution": h}
    return build(DataConfig, values, "data.")


def score_file(file: Path, *, dataset: str, out: Path | None, data_dir: str, suite: str | None, seed: int,
                     device: str, resources: MetricResources, log: Callable[[str], None]) -> tuple[Path, dict]:
    """Score a sample file with every applicable metric; one-row results.csv (compare's columns) + spec.json."""

    info = get_dataset_info(dataset)
    x = read_samples(file, image=info.kind == "image")
    cfg = eval_data_config(dataset, tuple(x.shape[1:]), data_dir) if info.kind == "image" else \
        build(DataConfig, {"name": dataset}, "data.")
    options = build(MetricOptions, load_suite(suite or info.suite).get("metrics", {}), "metrics.")
    validate_options(options)
    out = Path(out) if out else Path("results") / f"evaluate-{Path(file).stem}"
    check_writable(out)
    dev = resolve_device(device)
    data = load_dataset(cfg)
    images = image_evaluator(data, options=options, resources=resources, num_samples=len(x), data_cfg=cfg,
                             device=dev, log=log)
    log(f"scoring {len(x)} samples from {file} against {dataset}")
    metrics, notes = evaluate(data, x, seed=seed, images=images)
    meta = read_meta(file)
    row = file_row(file, meta, metrics, notes, n=len(x), seed=seed, device=dev)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, [row])
    spec = {"name": out.name, "suite": "evaluate", "dataset": dataset, "file": str(file),
            "file_sha256": file_sha256(Path(file)), "sample_meta": meta, "data": cfg.__dict__,
            "device": device_name(dev), "git_sha": git_sha(), "versions": versions(),
            "metrics": images.describe() if images is not None else None}
    atomic_write_text(out / "spec.json", json.dumps(spec, indent=2, default=str))
    return out, row


def file_row(file: Path, meta: dict, metrics: dict, notes: list[str], *, n: int, seed: int, device) -> dict:
    """A results row for a sample file: identity from `bench sample`'s FILE.json when there is one."""

    meta = {RENAMED.get(k, k): v for k, v in meta.items()}  # sample files written before a rename
    keys = ("sampler", "label", "model", "steps", "nfe_declared", "nfe_measured", "run_id", "checkpoint_step")
    settings = meta.get("sampler_settings")
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"sampler": "samples", "label": Path(file).stem, **{k: meta[k] for k in keys if k in meta},
            "seed": meta.get("seed", seed), "num_samples": n, **metrics,
            "sampler_settings": json.dumps(settings, sort_keys=True) if settings is not None else "",
            "notes": "; ".join(notes), "device": device_name(device), "torch_threads": torch.get_num_threads(),
            "git_sha": git_sha(), "timestamp": now}
