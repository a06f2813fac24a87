"""What each CLI command does, as plain functions (the CLI only parses options).
The environment (BENCH_* variables) is read by the CLI and arrives here as arguments."""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Callable

import torch

import methods
from bench.config.run import (
    DataConfig,
    build,
    latent_option,
    list_presets,
    load_preset,
    parse_sets,
    read_run_config,
    resolve_run_config,
    run_dir_for,
)
from bench.config.spec import (
    check_classes,
    list_suites,
    load_suite,
    parse_int_list,
    parse_names,
    resolve_compare_spec,
    sampler_options,
)
from bench.data.images import to_uint8
from bench.data.load import load_dataset
from bench.data.registry import DATASETS, get_dataset_info
from bench.errors import BenchError
from bench.files import atomic_write_text, check_writable, file_sha256
from bench.measure import runtime
from bench.measure.compare import compare
from bench.measure.latent import DecodedSampler
from bench.measure.sampling import draw_samples
from bench.metrics.classifier import SOURCES, load_or_train
from bench.metrics.evaluate import MetricOptions, evaluate, image_evaluator
from bench.metrics.options import MetricResources, validate_options
from bench.results.schema import RENAMED
from bench.results.provenance import device_name, git_sha, resolve_device, versions
from bench.results.sample_files import read_meta, read_samples, write_samples
from bench.results.store import write_results
from bench.runs.folders import build_sampler, load_model
from bench.runs.stage import stage_of_run
from bench.runs.train import train
from methods.grids import Grid, split_top_level
from methods.guidance import Guidance


def _method(name: str) -> type[methods.Model]:
    """A model class by name, or a one-line BenchError naming the models."""
    try:
        return methods.get_model(name)
    except ValueError as e:
        raise BenchError(str(e)) from None


def train_command(method: str, *, dataset: str | None, preset: str | None, config: Path | None, T: int | None,
                  sets: list[str], out: Path | None, resume: bool, runs_dir: Path, data_dir: str, progress: bool,
                  log: Callable[[str], None], log_with: str | None = None, latent: str | None = None) -> Path:

    if method not in methods.list_models() and method in methods.list_samplers():
        model = methods.get_sampler(method).default_model
        raise BenchError(f"{method} is a sampler, not a model: train the model it samples (`bench train {model}`),"
                         f" then sample it with --methods {method}")
    cls = _method(method)
    if not cls.trainable:
        raise BenchError(f"{method} has nothing to train: it is built from the data (bench compare --model {method})")
    if dataset is not None:
        get_dataset_info(dataset)
    flags = {}
    if T is not None:
        if "T" not in cls.Config.__dataclass_fields__:
            raise BenchError(f"--T does not apply to {method}: it has no discrete T"
                             f"{' (continuous time; choose steps when sampling)' if cls.time == 'continuous' else ''}")
        flags["model.T"] = T
    if data_dir:
        flags["data.root"] = data_dir
    if log_with is not None:
        flags["train.log_with"] = log_with
    if latent:

        flags["data.latent"] = latent_option(latent)
    preset = preset or get_dataset_info(dataset or "gaussians25").preset
    cfg = resolve_run_config(method, model_cls=cls.Config, preset=preset, dataset=dataset, config_file=config,
                             flags=flags, sets=parse_sets(sets))
    run_dir = Path(out) if out is not None else run_dir_for(cfg, runs_dir)
    return train(cfg, run_dir, resume=resume, progress=progress, log=log, runs_dir=runs_dir)


def compare_command(*, suite: str | None, methods: str | None, dataset: str | None, steps: str | None,
                    num_samples: int | None, seed: int | None, out: Path | None, device: str, runs_dir: Path,
                    data_dir: str, progress: bool, log: Callable[[str], None],
                    resources: MetricResources | None = None, nfe: str | None = None,
                    model: str | None = None, seeds: str | None = None,
                    bootstrap: int | None = None, guidance: str | None = None,
                    classes: str | None = None, precision: str | None = None,
                    compile_: bool | None = None, latent: str | None = None,
                    grid: str | None = None) -> tuple[Path, Path]:

    resolve_device(device)  # a bad --device fails before any work
    spec = resolve_compare_spec(suite=suite, methods_=parse_names(methods, "--methods") if methods else None,
                                dataset=dataset, steps=parse_int_list(steps, "--steps") if steps else None,
                                nfe=parse_int_list(nfe, "--nfe") if nfe else None,
                                models_=parse_names(model, "--model") if model else None,
                                num_samples=num_samples, seed=seed, data_root=data_dir,
                                seeds=parse_int_list(seeds, "--seeds") if seeds else None, bootstrap=bootstrap,
                                guidance=parse_names(guidance, "--guidance") if guidance else None, classes=classes,
                                precision=precision, compile_=compile_, latent=latent,
                                grids=_grid_list(split_top_level, grid))
    results_dir = Path(out) if out else Path("results") / spec.name
    report_dir = Path(out) if out else Path("reports") / spec.name
    compare(spec, runs_dir=runs_dir, results_dir=results_dir, report_dir=report_dir, device=device,
            progress=progress, log=log, resources=resources or MetricResources())
    return results_dir, report_dir / "report.md"


def _grid_list(split, text: str | None) -> list[str] | None:
    if text is None:
        return None
    try:
        return split(text)
    except ValueError as e:
        raise BenchError(str(e)) from None


def listing() -> str:
    lines = ["models (bench train NAME):"]
    for name in methods.list_models():
        cls = methods.get_model(name)
        cond = (", class-conditional with model.num_classes" + ("" if cls.guided else " (no guidance)")) if \
            "num_classes" in {f.name for f in dataclasses.fields(cls.Config)} else ""
        lines.append(f"  {name:<13} {cls.summary}" + (f" [{cls.kind}, {cls.time} time{cond}]" if cls.samplable else ""))
    lines.append("samplers (bench compare --methods NAME [--model MODEL]):")
    for name in methods.list_samplers():
        lines.append(f"  {name:<13} {methods.get_sampler(name).summary}")
    lines += ["which sampler runs on which model (* = the sampler's default model):", *compatibility()]
    lines.append("datasets:")
    lines += [f"  {d.name:<12} {d.description} [preset {d.preset}, suite {d.suite}]" for d in DATASETS.values()]
    lines.append("suites:")
    lines += [f"  {s:<16} {load_suite(s).get('description', '')}" for s in list_suites()]
    lines.append("presets:")
    lines += [f"  {p}" for p in list_presets()]
    return "\n".join(lines)


def compatibility() -> list[str]:
    """A sampler x model table: yes, yes* (the default model) or no (stages such as the autoencoder are left out)."""
    models = [m for m in methods.list_models() if methods.get_model(m).samplable]
    rows = [["sampler", *models]]
    for name in methods.list_samplers():
        cls = methods.get_sampler(name)
        rows.append([name, *[("yes*" if m == cls.default_model else "yes")
                             if cls.runs_on(methods.get_model(m)) is None else "-" for m in models]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


# --- image metrics: resources, sampling to files, evaluating files, the domain classifier -------------

def metric_resources(*, fid_weights: str, vgg16_weights: str, cache_dir: Path | None, offline: bool):
    """Where metric weights and caches are; a named weights file must exist (checked before any work)."""
    for flag, path in (("--fid-weights", fid_weights), ("--vgg16-weights", vgg16_weights)):
        if path and not Path(path).expanduser().is_file():
            raise BenchError(f"{flag} {path} does not exist; give the weights file or leave it unset")
    return MetricResources(fid_weights=fid_weights, vgg16_weights=vgg16_weights,
                           cache_dir=str(Path(cache_dir).expanduser()) if cache_dir else "", download=not offline)


def sample_command(run: Path, *, steps: int | None, num: int, out: Path, method: str | None, seed: int, batch: int,
                   sampler_opts: list[str], device: str, log: Callable[[str], None], guidance: str | None = None,
                   classes: str = "uniform", precision: str = "fp32", compile_: bool = False,
                   grid: str | None = None) -> Path:
    """Sample a trained run into FILE.npz (uint8 N x C x H x W images, or float N x 2 toy points)."""

    runtime.check(precision, compile_)
    out = Path(out)
    if out.suffix != ".npz":
        raise BenchError(f"--out must name an .npz file, got {out}")
    if num < 1 or batch < 1:
        raise BenchError(f"--num and --batch must be >= 1, got {num} and {batch}")
    cfg = read_run_config(run)
    model_cls = _method(cfg.method)
    if not model_cls.samplable:
        raise BenchError(f"{run} is a {cfg.method} run, a stage rather than a generative model: sample a run trained"
                         f" in its latent space (bench train ddpm --dataset {cfg.data.name} --latent {run})")
    name = method or methods.samplers_for(cfg.method)[0]
    try:
        cls = methods.get_sampler(name)
    except ValueError as e:
        raise BenchError(str(e)) from None
    reason = cls.runs_on(model_cls)
    if reason:
        raise BenchError(f"{reason}; {run} holds a {cfg.method} run (its samplers: "
                         f"{', '.join(methods.samplers_for(cfg.method))})")
    options = cls.Options(**sampler_options(cls, parse_sets(sampler_opts), cls.name))
    try:
        cls.validate(options)
    except ValueError as e:
        raise BenchError(str(e)) from None
    try:
        grid_spec = cls.grid_of(Grid.parse(grid)) if grid else None
    except ValueError as e:
        raise BenchError(str(e)) from None
    steps = cls.default_steps(model_cls, cfg.model) if steps is None else steps
    error = cls.valid_steps(model_cls, cfg.model, options, grid_spec).error(steps)
    if error:
        raise BenchError(f"{cls.name}: {error}")
    dev = resolve_device(device)
    check_writable(out.parent)
    m, cfg, meta = load_model(run, device=dev)
    runtime.prepare(m.denoisers(), precision=precision, compile_=compile_, device=dev)
    sampler = build_sampler(cls.name, m, steps, options, guidance=sample_guidance(m, guidance, classes), grid=grid_spec)
    if cfg.data.latent:  # decoded before anything is written: the file holds images

        sampler = DecodedSampler(sampler, stage_of_run(Path(run), cfg, dev))
    image = get_dataset_info(cfg.data.name).kind == "image"
    log(f"sampling {num} with {sampler.label} from {run}")
    x, nfe, labels = draw_samples(sampler, m, n=num, seed=seed, batch=min(batch, num), device=dev,
                                  to_data=to_uint8 if image else None, require_finite=True, classes=classes)
    conditioning = {"classes": classes, **sampler.guidance.describe()} if labels is not None else {}
    write_samples(out, x, labels=labels, meta={**conditioning,
        "run_dir": str(run), "run_id": cfg.run_id(), "sampler": cls.name, "model": cfg.method,
        "label": sampler.label, "steps": steps, "nfe_declared": sampler.nfe, "nfe_measured": nfe, "seed": seed,
        "batch": min(batch, num), "num_samples": num, "checkpoint_step": meta["step"], "dataset": cfg.data.name,
        "layout": "N x C x H x W uint8" if image else "N x 2 float32", "shape": list(x.shape),
        "sampler_settings": sampler.settings, **runtime.describe(precision, compile_), "device": device_name(dev),
        "git_sha": git_sha()})
    return out


def sample_guidance(model, guidance: str | None, classes: str):
    """The Guidance of `bench sample` on a conditional run (w = 0 by default); errors name the option."""

    k = model.num_classes(model.cfg)
    if not k:
        if guidance is not None or classes != "uniform":
            raise BenchError(f"--guidance and --classes need a class-conditional run; this {model.name} run has no"
                             " classes (train one with --set model.num_classes=K)")
        return None
    check_classes(classes, k, model.name)
    try:
        return Guidance.parse(guidance if guidance is not None else "0")
    except ValueError as e:
        raise BenchError(f"--guidance: {e}") from None


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


def evaluate_command(file: Path, *, dataset: str, out: Path | None, data_dir: str, suite: str | None, seed: int,
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
    row = _evaluate_row(file, meta, metrics, notes, n=len(x), seed=seed, device=dev)
    out.mkdir(parents=True, exist_ok=True)
    write_results(out, [row])
    spec = {"name": out.name, "suite": "evaluate", "dataset": dataset, "file": str(file),
            "file_sha256": file_sha256(Path(file)), "sample_meta": meta, "data": cfg.__dict__,
            "device": device_name(dev), "git_sha": git_sha(), "versions": versions(),
            "metrics": images.describe() if images is not None else None}
    atomic_write_text(out / "spec.json", json.dumps(spec, indent=2, default=str))
    return out, row


def _evaluate_row(file: Path, meta: dict, metrics: dict, notes: list[str], *, n: int, seed: int, device) -> dict:
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


def classifier_command(*, dataset: str, data_dir: str, cache_dir: Path | None, retrain: bool, device: str,
                       log: Callable[[str], None]) -> dict:
    """Train (or load the cached) domain classifier for an MNIST-family dataset; returns its record."""

    if dataset not in SOURCES:
        users = ", ".join(f"{d} uses the {i.classifier} classifier" for d, i in DATASETS.items()
                          if i.classifier and i.classifier != d)
        raise BenchError(f"the domain classifier trains on {' or '.join(SOURCES)}, not {dataset!r}"
                         + (f" ({users})" if users else ""))
    dev = resolve_device(device)
    data = load_dataset(DataConfig(name=dataset, root=data_dir))
    clf = load_or_train(dataset, data, cache_dir=Path(cache_dir).expanduser() if cache_dir else None, device=dev,
                        log=log, retrain=retrain)
    return clf.info
