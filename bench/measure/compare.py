"""compare(spec): train what is missing, then sample and measure every cell into results.csv (the report is
rendered from it by the caller, bench/api.py).

Results are written per cell, atomically (the whole CSV is rewritten to a temporary
file and renamed), so an interrupted comparison resumes where it stopped: a cell whose row
exists and was measured from the same weights (the checkpoint's sha256, recorded in the row)
is skipped. A row from other weights (another machine's training, a committed results file on
a fresh clone, a retrained run) is measured again and replaced, never inherited. The floor
row scores fresh real data the same way.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

import methods
from bench.config.spec import CompareSpec
from bench.data.load import check_labels, load_dataset
from bench.errors import BenchError
from bench.files import atomic_write_text, check_writable
from bench.measure.cell import floor_row, measure_cell
from bench.measure.latent import load_stages, reconstruction_floor
from bench.measure.orders import exact, measure_orders, write_orders
from bench.measure.sampling import kept
from bench.shard import Shard
from bench.measure.timing import block_noise
from bench.results.provenance import cpu_affinity
from bench.metrics.evaluate import MetricResources, evaluate, image_evaluator
from bench.results import stats
from bench.results.provenance import device_name, git_sha, resolve_device, versions
from bench.results.schema import FLOOR
from bench.results.store import ResultsStore, cell_key, read_results, read_spec, row_key
from bench.runs.folders import weights_sha256
from bench.runs.train import ensure_trained


def compare(spec: CompareSpec, *, runs_dir: Path, results_dir: Path, report_dir: Path,
            device: str = "auto", progress: bool = True, log: Callable[[str], None] = print,
            resources: MetricResources = MetricResources(), shard: Shard | None = None) -> pd.DataFrame:
    """Run the whole grid; returns the results table (also written to results_dir/results.csv).
    `resources` says where image-metric weights and caches are (never downloads by default). Under
    `accelerate launch` every process trains and samples its share; the main one alone logs and writes."""
    shard = shard or Shard.current()
    if not shard.main:
        log, progress = _quiet, False
    results_dir, report_dir, runs_dir = Path(results_dir), Path(report_dir), Path(runs_dir)
    for path in (results_dir, report_dir, runs_dir):
        check_writable(path)
    check_grid(results_dir, spec)
    dev = shard.device(resolve_device(device))
    code = git_sha()  # before this comparison writes anything: its own rewrite of committed rows is not "dirty"
    run_cfgs = {cell: spec.run_config(cell) for cell in spec.cells}
    data_cfg = next(iter(run_cfgs.values())).data if run_cfgs else None
    data = load_dataset(data_cfg) if run_cfgs else None
    for cfg in run_cfgs.values():  # a conditional model on unlabelled data (or with the wrong K) fails here, first
        check_labels(cfg.model_name, methods.get_model(cfg.model_name).num_classes(cfg.model), data)
    # image metrics: networks, weights and the classifier are set up (and checked) before any training
    images = image_evaluator(data, options=spec.metrics, resources=resources, num_samples=spec.num_samples,
                             data_cfg=data_cfg, device=dev, log=log, shard=shard) if run_cfgs else None

    run_dirs = {cell: spec.run_dir(cell, runs_dir, cfg) for cell, cfg in run_cfgs.items()}
    ensure_checkpoints(run_cfgs, run_dirs, runs_dir=runs_dir, progress=progress, log=log)
    stages = load_stages(run_cfgs, run_dirs, runs_dir=runs_dir, data=data, device=dev, shard=shard)
    if shard.main:
        results_dir.mkdir(parents=True, exist_ok=True)
        (results_dir / "samples").mkdir(exist_ok=True)
        _write_spec(spec, results_dir, report_dir, run_cfgs, run_dirs, dev, images, code=code)
    by_dir = {d: weights_sha256(d, run_cfgs[cell]) for cell, d in run_dirs.items()}  # once per checkpoint
    weights = {cell: by_dir[d] for cell, d in run_dirs.items()}
    store = ResultsStore(results_dir, spec, run_cfgs, weights, code=code, device=dev, writer=shard.main, log=log)
    shard.barrier()  # every process has read the results before the main one adds to them

    _floors(spec, store, data, images, stages, log)
    per_checkpoint: dict = {}  # what depends on the checkpoint only (bits/dim), across the cells that sample it
    for i, cell in enumerate(spec.cells, 1):
        if cell_key(cell, spec, run_cfgs) in store.done:
            log(f"[cell {i}/{len(spec.cells)}] {_describe(cell)}: already measured, skipped")
            continue
        log(f"[cell {i}/{len(spec.cells)}] {_describe(cell)}: sampling {spec.num_samples}, timing")
        measured = measure_cell(cell, spec, run_dirs[cell], data, dev,
                                diagnostics_dir=results_dir / "diagnostics", per_checkpoint=per_checkpoint,
                                images=images, shard=shard, stage=stages[cell])
        if measured is not None:
            row, samples = measured
            store.save({**row, "weights_sha256": weights[cell]}, samples)
        shard.barrier()  # the next cell starts together: timing never overlaps another process's sampling
    if shard.main:
        _orders(spec, run_cfgs, data, results_dir, log)
        stats.write_summary(results_dir)
    shard.barrier()
    return read_results(results_dir)


def _describe(cell) -> str:
    """A cell as the progress log names it."""
    name = f"{cell.variant or cell.sampler}{'@' + cell.model_label if cell.model_label else ''} steps={cell.steps}"
    name += f" seed={cell.seed}" if cell.seed is not None else ""
    name += f" guidance={cell.guidance}" if cell.guidance else ""
    return name + (f" grid={cell.grid}" if cell.grid else "")


def _floors(spec: CompareSpec, store: ResultsStore, data, images, stages: dict, log: Callable[[str], None]) -> None:
    """The floor rows not yet measured, per sampling seed: real data scored like a model, and each autoencoder's
    reconstructions of it (the best a latent model can score)."""
    for seed in spec.seed_list:
        seed = spec.seed if seed is None else seed
        if row_key(FLOOR, "", "", "", seed) not in store.done:
            log(f"[floor] scoring {spec.num_samples} real samples (seed {seed})")
            store.save(*floor_row(spec, data, images, seed=seed))
        for stage in {id(s): s for s in stages.values() if s is not None}.values():  # one per autoencoder
            if row_key(FLOOR, stage.run_dir.name, "", "", seed) not in store.done:
                log(f"[floor] scoring {stage.run_dir.name}'s reconstructions of {spec.num_samples} real samples")
                x, labels, row = reconstruction_floor(stage, data, spec.num_samples, seed=seed)
                metrics, notes = evaluate(data, x, seed=seed, images=images, bootstrap=spec.bootstrap,
                                          labels=labels if spec.conditional else None)
                store.save({**row, **metrics, "notes": "; ".join([row["notes"]] + notes)}, kept(data, x))


def _orders(spec: CompareSpec, run_cfgs: dict, data, results_dir: Path, log: Callable[[str], None]) -> None:
    """orders.csv when the grid holds an exact-score model (bench/measure/orders.py)."""
    exact_cells = [c for c in spec.cells if exact(methods.get_model(run_cfgs[c].model_name))]
    if not exact_cells:
        return
    log(f"[orders] solving the probability-flow ODE to high accuracy for {len(exact_cells)} exact-score cells")
    models: dict = {}

    def load(cell):
        cfg = run_cfgs[cell]
        key = cfg.run_id()
        if key not in models:
            models[key] = methods.get_model(cfg.model_name).from_data(cfg.model, data).eval()
        return models[key]

    def noise_for(cell, model):
        return block_noise(model.data_shape, batch=spec.sample_batch, seed=spec.sampling_seed(cell) * 1_000_003,
                           device=torch.device("cpu"))[0]

    write_orders(measure_orders(exact_cells, load, noise_for=noise_for), results_dir)


def _quiet(_: str) -> None:
    """The log of a process other than the main one: it says nothing the main one does not."""


def check_grid(results_dir: Path, spec: CompareSpec) -> None:
    """A results folder is reused only for the same grid, and only when its spec.json says which."""
    old = read_spec(results_dir)
    if old is None and (results_dir / "results.csv").exists():
        raise BenchError(f"{results_dir} holds a results.csv without spec.json: its grid cannot be checked, so its rows"
                         " are never reused; delete the folder or choose another --out")
    if old is not None and not isinstance(old, dict):
        raise BenchError(f"{results_dir / 'spec.json'} is not a spec written by `bench compare`; delete {results_dir}"
                         " or choose another --out")
    if old is not None and old.get("grid_hash") != spec.grid_hash():
        raise BenchError(f"{results_dir} holds results of a different grid (suite {old.get('suite')!r});"
                         " choose another --out or delete it")


def ensure_checkpoints(run_cfgs: dict, run_dirs: dict, *, runs_dir: Path, progress: bool,
                       log: Callable[[str], None]) -> None:
    """Train every checkpoint the grid samples that is missing or unfinished (all processes of a launch
    train it together). `run_cfgs` / `run_dirs`: each cell's config and run folder; parents go to runs_dir."""
    pending = {run_dirs[cell]: cfg for cell, cfg in run_cfgs.items() if methods.get_model(cfg.model_name).trainable}
    for i, (run_dir, cfg) in enumerate(pending.items(), 1):
        ensure_trained(cfg, run_dir, runs_dir=runs_dir, progress=progress, log=log,
                       what=f"[train {i}/{len(pending)}] {cfg.model_name} on {cfg.data.name} -> {run_dir}")


def seeding(spec: CompareSpec) -> str:
    blocks = (f"samples drawn in blocks of {spec.sample_batch}; block b uses torch seed s*1000003+b for its noise"
              " and every random draw inside the sampler")
    if spec.seeds:
        return (f"training seeds {', '.join(map(str, spec.seeds))}: seed s trains each checkpoint with train.seed = s"
                f" and samples it with sampling seed s; {blocks}")
    return f"one training run per checkpoint (the preset's train.seed); sampling seed s = {spec.seed}; {blocks}"


def _write_spec(spec: CompareSpec, results_dir: Path, report_dir: Path, run_cfgs: dict, run_dirs: dict,
                device: torch.device, images=None, *, code: str) -> None:
    cells = []
    for cell in spec.cells:
        cfg = run_cfgs[cell]
        cls = methods.get_model(cfg.model_name)
        fields = {f.metadata.get("id_key", f.name): getattr(cell, f.name) for f in dataclasses.fields(cell)}
        cells.append({**fields, "model": cfg.model_name,  # every field under its hashed name, as spec.json always had
                      "run_dir": str(run_dirs[cell]) if cls.trainable else None, "run_id": cfg.run_id(),
                      "key_params": {k: getattr(cfg.model, k) for k in cls.key_params},
                      "parents": {role: p.run_id() for role, p in cfg.parents}})
    doc = {
        "name": spec.name, "suite": spec.suite, "dataset": spec.dataset, "preset": spec.preset,
        "grid_hash": spec.grid_hash(), "grid": spec.grid_dict(), "cells": cells,
        "report_dir": os.path.relpath(Path(report_dir).resolve(), Path(results_dir).resolve()),
        "device": device_name(device), "torch_threads": torch.get_num_threads(), "cpu_affinity": cpu_affinity(),
        "git_sha": code, "versions": versions(),
        "seeding": seeding(spec),
        "notes": list(spec.notes),
        "command": spec.command,
    }
    if images is not None:
        doc["metrics"] = images.describe()
    atomic_write_text(results_dir / "spec.json", json.dumps(doc, indent=2, default=str))
