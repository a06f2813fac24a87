"""bench as a Python library: one function per command, each taking what the CLI takes, as a request object or
keywords. The CLI only parses text into these; the environment (BENCH_* variables) is read by the CLI and
arrives here as arguments, never read below this module.

    from bench.api import CompareRequest, compare
    results_dir, report = compare(CompareRequest(suite="toy", samplers=("ddim", "dpmpp-2m"), nfe=(10,)))
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import methods
from bench.config.datasets import DATASETS, get_dataset_info
from bench.config.requests import CompareRequest, TrainRequest
from bench.config.resolve import resolve_compare_spec
from bench.config.run import DataConfig, latent_option, resolve_run_config
from bench.config.run import run_dir_for
from bench.config.values import parse_sets
from bench.data.load import load_dataset
from bench.errors import BenchError
from bench.listing import listing
from bench.measure.compare import compare as compare_spec
from bench.measure.sample_file import sample_to_file
from bench.measure.score_file import score_file
from bench.shard import Shard
from bench.metrics.classifier import SOURCES, load_or_train
from bench.config.metric_options import MetricResources
from bench.report.render import render_report
from bench.results.provenance import resolve_device
from bench.results.schema import IMAGE, TOY
from bench.runs.diffusers_io import export_run, import_pipeline
from bench.runs.train import train as train_run

__all__ = ["CompareRequest", "TrainRequest", "classifier", "compare", "evaluate", "export_run", "import_pipeline",
           "listing", "metric_resources", "report", "sample", "train"]

sample = sample_to_file  # `bench sample`: a run into an .npz file (bench/measure/sample_file.py)
evaluate = score_file  # `bench evaluate`: a sample file scored into a one-row results folder
report = render_report  # `bench report`: report.md and figures from a results folder, sampling nothing


def _model_class(name: str) -> type[methods.Model]:
    """A model class by name, or a one-line error that names the models (and says so when it is a sampler)."""
    if name not in methods.list_models() and name in methods.list_samplers():
        model = methods.get_sampler(name).default_model
        raise BenchError(f"{name} is a sampler, not a model: train the model it samples (`bench train {model}`),"
                         f" then sample it with --samplers {name}")
    try:
        return methods.get_model(name)
    except ValueError as e:
        raise BenchError(str(e)) from None


def train(req: TrainRequest, log: Callable[[str], None] = print) -> Path:
    """Train one model into its run folder (checkpoints, stats.jsonl, preview.png); returns the folder."""
    cls = _model_class(req.model)
    if not cls.trainable:
        raise BenchError(f"{req.model} has nothing to train: it is built from the data"
                         f" (bench compare --model {req.model})")
    if req.dataset is not None:
        get_dataset_info(req.dataset)
    flags = {}
    if req.T is not None:
        if "T" not in cls.Config.__dataclass_fields__:
            raise BenchError(f"--T does not apply to {req.model}: it has no discrete T"
                             f"{' (continuous time; choose steps when sampling)' if cls.time == 'continuous' else ''}")
        flags["model.T"] = req.T
    if req.data_root:
        flags["data.root"] = req.data_root
    if req.log_with is not None:
        flags["train.log_with"] = req.log_with
    if req.latent:
        flags["data.latent"] = latent_option(req.latent)
    preset = req.preset or get_dataset_info(req.dataset or "gaussians25").preset
    cfg = resolve_run_config(req.model, model_cls=cls.Config, preset=preset, dataset=req.dataset,
                             config_file=req.config, flags=flags, sets=parse_sets(list(req.sets)))
    run_dir = Path(req.out) if req.out is not None else run_dir_for(cfg, req.runs_dir)
    return train_run(cfg, run_dir, resume=req.resume, progress=req.progress, log=log, runs_dir=req.runs_dir)


def compare(req: CompareRequest, log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Train what is missing, sample and measure every cell, write results.csv and the report; returns
    (results folder, report.md). Under `accelerate launch` every process works and the main one writes."""
    resolve_device(req.device)  # a bad --device fails before any work
    resources = metric_resources(fid_weights=req.fid_weights, vgg16_weights=req.vgg16_weights,
                                 cache_dir=req.cache_dir, offline=req.offline)
    spec = resolve_compare_spec(req)
    results_dir = Path(req.out) if req.out else Path("results") / spec.name
    report_dir = Path(req.out) if req.out else Path("reports") / spec.name
    shard = Shard.current()
    compare_spec(spec, runs_dir=req.runs_dir, results_dir=results_dir, report_dir=report_dir, device=req.device,
                 progress=req.progress, log=log, resources=resources, shard=shard)
    if shard.main:
        render_report(results_dir, report_dir)
    shard.barrier()
    return results_dir, report_dir / "report.md"


def metric_resources(*, fid_weights: str = "", vgg16_weights: str = "", cache_dir: str | Path | None = None,
                     offline: bool = True) -> MetricResources:
    """Where metric weights and caches are; a named weights file must exist (checked before any work)."""
    for flag, path in (("--fid-weights", fid_weights), ("--vgg16-weights", vgg16_weights)):
        if path and not Path(path).expanduser().is_file():
            raise BenchError(f"{flag} {path} does not exist; give the weights file or leave it unset")
    return MetricResources(fid_weights=fid_weights, vgg16_weights=vgg16_weights,
                           cache_dir=str(Path(cache_dir).expanduser()) if cache_dir else "", download=not offline)


def classifier(*, dataset: str, data_dir: str = "", cache_dir: Path | None = None, retrain: bool = False,
               device: str = "auto", log: Callable[[str], None] = print) -> dict:
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


def row_summary(row: dict) -> str:
    """The metric values of a results row, one `name value` pair each (what `bench evaluate` prints)."""
    return "  ".join(f"{k} {row[k]:.4g}" for k in TOY + IMAGE if isinstance(row.get(k), (int, float)))
