"""compare(spec): train what is missing, then sample and measure every cell into results.csv.

Results are written per cell, atomically (the whole CSV is rewritten to a temporary
file and renamed), so an interrupted comparison resumes where it stopped: a cell whose row
exists and was measured from the same weights (the checkpoint's sha256, recorded in the row)
is skipped. A row from other weights (another machine's training, a committed results file on
a fresh clone, a retrained run) is measured again and replaced, never inherited. The floor
row scores fresh real data the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

import methods
from bench.runs.checkpoint import atomic_write_text, check_writable
from bench.config.run import diff_configs
from bench.data.datasets import check_labels, load_dataset
from bench.errors import BenchError
from bench.metrics.evaluate import MetricResources, evaluate, floor_samples, image_evaluator, is_image_data
from bench.metrics.likelihood import bits_per_dim
from bench.results.provenance import device_name, git_sha, resolve_device, versions
from bench.data.images import to_model
from bench.measure.orders import exact, measure_orders, write_orders
from bench.runs.latent import DecodedSampler, LatentData, Stage, latent_bpd, latent_columns, load_stages, reconstruction_floor
from bench.runs.folders import build_sampler, load_method, training_seconds, weights_sha256
from bench.results.schema import COLUMNS, FLOOR_METHOD, INTEGER, key_text, safe_name
from bench.config.spec import Cell, CompareSpec
from bench.measure.timing import block_labels, block_noise, call_sampler, count_calls, cpu_affinity, time_sampler
from bench.measure import runtime
from bench.results import stats
from bench.measure.shard import SINGLE, Shard
from bench.runs.train import ensure_trained

SAMPLES_KEPT = 2000  # samples per cell saved for figures (2-D points)
IMAGES_KEPT = 64  # images per cell saved for the report's sample grids (uint8)


def _read_spec(results_dir: Path) -> dict | None:
    path = results_dir / "spec.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BenchError(f"{path} is corrupt; delete {results_dir} or choose another --out") from None


def read_results(results_dir: Path) -> pd.DataFrame:
    path = Path(results_dir) / "results.csv"
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    try:
        return pd.read_csv(path, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is corrupt ({e}); delete it to measure again") from None


def write_results(results_dir: Path, rows: list[dict]) -> None:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in INTEGER:
        df[col] = pd.to_numeric(df[col]).round().astype("Int64")
    atomic_write_text(results_dir / "results.csv", df.to_csv(index=False))


def cell_label(cell: Cell, sampler_label: str) -> str:
    """The sampler's label (`dpmpp-2m-10`), named after the variant when there is one, with
    `@<model>` when the model is not the sampler's default (`dpmpp-2m-10@oracle`), or the run folder's name
    for a run given as --model (`ddim-10@1a2b3c4d-ddpm-cifar10`)."""
    label = sampler_label.replace(cell.method, cell.variant, 1) if cell.variant else sampler_label
    label += f":{cell.grid}" if cell.grid else ""
    return label + (f"@{cell.model_label}" if cell.model_label else "")


def draw_samples(sampler, method: methods.Method, *, n: int, seed: int, batch: int, device: torch.device,
                 to_data: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 require_finite: bool = False, classes: str = "uniform", shard: Shard = SINGLE
                 ) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """n samples in blocks of `batch`, block b seeded (seed, b); returns (samples, NFE per sample: network
    evaluations per sample, the mean over blocks, rounded, for an adaptive solver whose calls vary, and
    the classes asked of a conditional model, else None).
    `to_data` maps each block to data space as it comes (uint8 images stay small in memory).
    `require_finite`: a NaN or inf sample is an error (before quantising, which would hide it).
    `shard`: under several processes each draws the blocks it owns (bench/shard.py) and all get all of them."""
    num_classes = method.num_classes(method.cfg)
    mine, error = {}, None
    for b in range(math.ceil(n / batch)):
        if not shard.owns(b) or error:
            continue
        noise, gen = block_noise(method.data_shape, batch=batch, seed=seed * 1_000_003 + b, device=device)
        y = block_labels(num_classes, batch=batch, seed=seed * 1_000_003 + b, classes=classes)
        with count_calls(method.denoisers(), batch=batch) as counter:
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


def save_diagnostics(method: methods.Method, path: Path) -> None:
    """The method's optional diagnostics (VDM: gamma(t)) as an .npz the report can plot."""
    arrays = method.diagnostics()
    if arrays:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **{k: v.detach().cpu().numpy() for k, v in arrays.items()})


def kept(data, x: torch.Tensor) -> np.ndarray:
    """What samples/<label>.npz keeps for the report: a grid's worth of images, or 2-D points."""
    return x[:IMAGES_KEPT if is_image_data(data) else SAMPLES_KEPT].numpy()


def load_model(cell: Cell, spec: CompareSpec, run_dir: Path, data, device: torch.device):
    """The model a cell samples: a trained checkpoint, or one built from the data (the oracle)."""
    expected = spec.run_config(cell)
    cls = methods.get_method(expected.method)
    if not cls.trainable:
        return cls.from_data(expected.model, data).to(device).eval(), expected, {"step": None}
    method, cfg, meta = load_method(run_dir, device=device)
    if cfg.run_id() != expected.run_id() or tuple(meta["data_shape"]) != tuple(data.shape):
        raise BenchError(f"{run_dir} does not hold the run this cell needs (config or data shape differs:"
                         f" {'; '.join(diff_configs(cfg, expected)[:2]) or meta['data_shape']}); delete it to retrain")
    return method, cfg, meta


def budget_note(cell: Cell, nfe: int) -> list[str]:
    """What a row says when its NFE budget could not be spent exactly."""
    if not cell.nfe_target or nfe == cell.nfe_target:
        return []
    return [f"NFE budget {cell.nfe_target} not met exactly: {cell.method} makes {nfe} network calls at"
            f" {cell.steps} steps, the most steps within the budget"]


def adaptive_note(sampler) -> list[str]:
    if not sampler.adaptive:
        return []
    return ["adaptive solver: NFE is measured (mean over sample blocks), none declared; tolerances in"
            " sampler_settings"]


def measure_cell(cell: Cell, spec: CompareSpec, run_dir: Path, data, device: torch.device,
                 diagnostics_dir: Path | None = None, per_checkpoint: dict | None = None,
                 images=None, shard: Shard = SINGLE, stage: Stage | None = None) -> tuple[dict, np.ndarray] | None:
    """One results row and the samples kept for figures; it writes nothing (but diagnostics on the main
    process). `per_checkpoint` caches what depends on the checkpoint only (bits/dim), across the cells
    that sample it; `images` scores image samples. Under several processes (`shard`) every process
    samples its blocks and extracts its share of the features; the main one alone times the sampler
    and returns the row (the others None). A latent cell (`stage`: its autoencoder) samples latents, which
    the decoder turns into images inside the timed sampler call, before any metric."""
    method, cfg, meta = load_model(cell, spec, run_dir, LatentData(data, stage) if stage else data, device)
    runtime.prepare(method.denoisers(), precision=spec.precision, compile_=spec.compile, device=device)
    seed = spec.sampling_seed(cell)
    if diagnostics_dir is not None and cell.seed in (None, spec.seed_list[0]) and shard.main:
        save_diagnostics(method, diagnostics_dir / f"{safe_name(cell.variant or cfg.method)}.npz")
    key = (str(run_dir), cfg.method, seed)
    cache = per_checkpoint if per_checkpoint is not None else {}
    if key not in cache:
        cache[key] = latent_bpd(method) if stage else bits_per_dim(
            method, data, name=cfg.method, num_images=spec.bpd_images, seed=seed, device=device)
    likelihood, bpd_notes = cache[key]
    guidance = cell.guidance_spec()
    sampler = build_sampler(cell.method, method, cell.steps, cell.options(), guidance=guidance, grid=cell.grid_spec())
    if stage is not None:
        sampler = DecodedSampler(sampler, stage)
    x, nfe, labels = draw_samples(sampler, method, n=spec.num_samples, seed=seed, batch=spec.sample_batch,
                                  device=device, to_data=data.to_data, classes=spec.classes, shard=shard)
    unconditional = guidance is not None and guidance.w is None  # the null class: no class was asked for
    metrics, notes = evaluate(data, x, seed=seed, images=images, bootstrap=spec.bootstrap,
                              labels=None if unconditional else labels)
    if hasattr(method, "nearest_distance"):  # the data oracle: how far samples land from its training images
        metrics["nn_dist"] = float(method.nearest_distance(to_model(x) if x.dtype == torch.uint8 else x).mean())
    if not shard.main:
        return None  # the main process times the sampler, alone on the machine's cores but for idle waiters
    timing = time_sampler(sampler, method.denoisers(), method.data_shape, device, spec.timing, seed=seed,
                          num_classes=method.num_classes(method.cfg), classes=spec.classes)
    if shard.world > 1:
        notes = notes + [f"sampled by {shard.world} processes; timed on process 0 alone, the others waiting"]
    latent = latent_columns(stage, device, spec.timing, seed) if stage else {}
    row = {
        **conditioning_columns(guidance, spec), "method": cell.method, "label": cell_label(cell, sampler.label),
        "variant": cell.variant, "grid_axis": cell.grid, "grid": getattr(sampler, "settings", {}).get("grid", ""),
        "final_sigma": getattr(sampler, "settings", {}).get("final_sigma"),
        "model": model_column(cell, cfg), "steps": cell.steps, "nfe_target": cell.nfe_target or None, "seed": seed,
        "num_samples": spec.num_samples, "nfe_declared": None if sampler.adaptive else sampler.nfe,
        "nfe_measured": nfe, **timing_columns(timing),
        **metrics, **likelihood,
        "train_s": training_seconds(run_dir) if type(method).trainable else None,
        **latent, "run_id": cfg.run_id(), "checkpoint_step": meta["step"],
        "sampler_settings": json.dumps(sampler.settings, sort_keys=True, default=str),
        **runtime.describe(spec.precision, spec.compile),
        "notes": "; ".join(budget_note(cell, nfe) + adaptive_note(sampler) + notes + bpd_notes
                           + ([timing.flag] if timing.flag else [])),
    }
    return row, kept(data, x)


def conditioning_columns(g, spec: CompareSpec) -> dict:
    """guidance (w, or 'uncond'), guidance_scale (diffusers' 1 + w) and classes of a conditional model's row
    (`g`: the cell's methods.guidance.Guidance, None for an unconditional model)."""
    if g is None:
        return {}
    d = g.describe()
    asked = "uniform" if spec.classes == "uniform" else f"class {spec.classes}"
    return {"guidance": d["guidance"], "guidance_scale": d["guidance_scale"],
            "classes": "null class" if g.w is None else asked}


def timing_columns(t) -> dict:
    """A Timing as results columns (bench/schema.py); `timing_flag` is empty unless it is an error."""
    return {"sample_ms_per_100": t.sample_ms, "sample_ms_per_100_iqr": t.sample_iqr_ms,
            "forward_ms_per_100": t.forward_ms, "sampler_efficiency": t.efficiency,
            "sampler_efficiency_iqr": t.efficiency_iqr, "sample_ref_per_100": t.sample_ref,
            "reference_ms": t.reference_ms, "timing_warmup": t.warmup, "timing_repeats": t.repeats,
            "timing_flag": stats.FLAG if t.flag else ""}


def floor_row(spec: CompareSpec, data, images=None, seed: int | None = None) -> tuple[dict, np.ndarray]:
    """Real data scored like a method (every process scores it: image features are sharded)."""
    seed = spec.seed if seed is None else seed
    x, labels = floor_samples(data, spec.num_samples, seed=seed, labelled=True)
    metrics, notes = evaluate(data, x, seed=seed, images=images, bootstrap=spec.bootstrap,
                              labels=labels if spec.conditional else None)
    first = "fresh real samples scored like a method"
    if is_image_data(data):
        first = "real test images scored like a method against the training reference"
        if len(x) < spec.num_samples:
            first += f" (the test split holds only {len(x)} images)"
    row = {"method": FLOOR_METHOD, "label": "data (floor)", "seed": seed, "num_samples": len(x),
           **metrics, "notes": "; ".join([first] + notes)}
    return row, kept(data, x)


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
        check_labels(cfg.method, methods.get_method(cfg.method).num_classes(cfg.model), data)
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

    per_checkpoint: dict = {}
    for seed in spec.seed_list:
        seed = spec.seed if seed is None else seed
        if _key(FLOOR_METHOD, "", "", "", seed) not in store.done:
            log(f"[floor] scoring {spec.num_samples} real samples (seed {seed})")
            store.save(*floor_row(spec, data, images, seed=seed))
        for stage in {id(s): s for s in stages.values() if s is not None}.values():  # one per autoencoder
            if _key(FLOOR_METHOD, stage.run_dir.name, "", "", seed) not in store.done:
                log(f"[floor] scoring {stage.run_dir.name}'s reconstructions of {spec.num_samples} real samples")
                x, labels, row = reconstruction_floor(stage, data, spec.num_samples, seed=seed)
                metrics, notes = evaluate(data, x, seed=seed, images=images, bootstrap=spec.bootstrap,
                                          labels=labels if spec.conditional else None)
                store.save({**row, **metrics, "notes": "; ".join([row["notes"]] + notes)}, kept(data, x))
    for i, cell in enumerate(spec.cells, 1):
        name = f"{cell.variant or cell.method}{'@' + cell.model_label if cell.model_label else ''} steps={cell.steps}"
        name += f" seed={cell.seed}" if cell.seed is not None else ""
        name += f" guidance={cell.guidance}" if cell.guidance else ""
        name += f" grid={cell.grid}" if cell.grid else ""
        if _cell_key(cell, spec, run_cfgs) in store.done:
            log(f"[cell {i}/{len(spec.cells)}] {name}: already measured, skipped")
            continue
        log(f"[cell {i}/{len(spec.cells)}] {name}: sampling {spec.num_samples}, timing")
        measured = measure_cell(cell, spec, run_dirs[cell], data, dev,
                                diagnostics_dir=results_dir / "diagnostics", per_checkpoint=per_checkpoint,
                                images=images, shard=shard, stage=stages[cell])
        if measured is not None:
            row, samples = measured
            store.save({**row, "weights_sha256": weights[cell]}, samples)
        shard.barrier()  # the next cell starts together: timing never overlaps another process's sampling

    if shard.main:
        from bench.report.render import render_report

        _orders(spec, run_cfgs, data, results_dir, log)
        stats.write_summary(results_dir)
        render_report(results_dir, report_dir)
    shard.barrier()
    return read_results(results_dir)


def _orders(spec: CompareSpec, run_cfgs: dict, data, results_dir: Path, log: Callable[[str], None]) -> None:
    """orders.csv when the grid holds an exact-score model (bench/orders.py)."""
    exact_cells = [c for c in spec.cells if exact(methods.get_method(run_cfgs[c].method))]
    if not exact_cells:
        return
    log(f"[orders] solving the probability-flow ODE to high accuracy for {len(exact_cells)} exact-score cells")
    models: dict = {}

    def load(cell):
        cfg = run_cfgs[cell]
        key = cfg.run_id()
        if key not in models:
            models[key] = methods.get_method(cfg.method).from_data(cfg.model, data).eval()
        return models[key]

    def noise_for(cell, model):
        return block_noise(model.data_shape, batch=spec.sample_batch, seed=spec.sampling_seed(cell) * 1_000_003,
                           device=torch.device("cpu"))[0]

    write_orders(measure_orders(exact_cells, load, noise_for=noise_for), results_dir)


def _quiet(_: str) -> None:
    """The log of a process other than the main one: it says nothing the main one does not."""


def check_grid(results_dir: Path, spec: CompareSpec) -> None:
    """A results folder is reused only for the same grid, and only when its spec.json says which."""
    old = _read_spec(results_dir)
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
    pending = {run_dirs[cell]: cfg for cell, cfg in run_cfgs.items() if methods.get_method(cfg.method).trainable}
    for i, (run_dir, cfg) in enumerate(pending.items(), 1):
        ensure_trained(cfg, run_dir, runs_dir=runs_dir, progress=progress, log=log,
                       what=f"[train {i}/{len(pending)}] {cfg.method} on {cfg.data.name} -> {run_dir}")


class ResultsStore:
    """results.csv of one grid: the rows worth keeping (a row measured from other weights, or a floor row
    from other code or another device, is dropped to be measured again), the identities already done,
    and `save`, which rewrites the CSV atomically with each new row (only where `writer`)."""

    def __init__(self, results_dir: Path, spec: CompareSpec, run_cfgs: dict, weights: dict, *, code: str,
                 device: torch.device, writer: bool, log: Callable[[str], None]):
        self.results_dir, self.spec, self.writer = results_dir, spec, writer
        wanted = {_cell_key(c, spec, run_cfgs): weights[c] for c in spec.cells}
        self.rows, stale = [], 0
        for r in read_results(results_dir).to_dict("records"):
            key = _row_key(r)
            if key in wanted and r.get("weights_sha256") != wanted[key]:
                stale += 1  # measured from other weights: measured again
                continue
            if r.get("method") == FLOOR_METHOD and (r.get("git_sha"), r.get("device")) != (code, device_name(device)):
                stale += 1  # a floor row has no weights: it is kept only from this code on this device
                continue
            self.rows.append(r)
        if stale:
            log(f"{stale} rows in {results_dir} were measured from other weights, other code (the floor) or before"
                " weights were recorded: measuring them again")
            if writer:
                write_results(results_dir, self.rows)
        self.done = {_row_key(r) for r in self.rows}
        self.common = {"device": device_name(device), "torch_threads": torch.get_num_threads(),
                       "cpu_affinity": cpu_affinity(), "git_sha": code}
        if code.endswith("+dirty"):
            log(f"warning: the working tree has uncommitted changes (code {code}): these rows cannot be"
                " traced to a commit; commit first for results you keep")

    def save(self, row: dict, samples: np.ndarray) -> None:
        if not self.writer:
            return
        row = {**row, **self.common,
               "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        np.savez_compressed(samples_path(self.results_dir, row["label"], row["seed"], self.spec), samples=samples)
        self.rows.append(row)
        write_results(self.results_dir, self.rows)


def samples_path(results_dir: Path, label: str, seed, spec: CompareSpec) -> Path:
    """samples/<label>.npz for the grid's first seed (the one the report draws), <label>.seed<s>.npz
    for the other seeds of a seeds axis."""
    first = spec.seed_list[0]
    first = spec.seed if first is None else first
    suffix = "" if seed is None or int(seed) == first else f".seed{int(seed)}"
    return Path(results_dir) / "samples" / f"{safe_name(label)}{suffix}.npz"


def model_column(cell: Cell, cfg) -> str:
    """A row's `model`: the model's registry name (`<name>-latent` in an autoencoder's latent space), or a pinned
    run's folder name (two imported pipelines are two models)."""
    if cell.run:
        return Path(cell.run).name
    return f"{cfg.method}-latent" if cfg.data.latent else cfg.method


def _cell_key(cell: Cell, spec: CompareSpec, run_cfgs: dict) -> tuple[str, ...]:
    return _key(cell.method, model_column(cell, run_cfgs[cell]), cell.variant, cell.steps, spec.sampling_seed(cell),
                cell.guidance, cell.grid)


def _key(method, model, variant, steps, seed, guidance="", grid="") -> tuple[str, ...]:
    """Identity of a row within one grid (bench/schema.py key_text); `grid` is the cell's grid axis value
    (empty for the sampler's default grid)."""
    return tuple(key_text(v) for v in (method, model, variant, steps, seed, guidance, grid))


def _row_key(row: dict) -> tuple[str, ...]:
    """A results row's identity; rows written before the `model` column name it `trained_as`."""
    model = row.get("model")
    if model is None or (isinstance(model, float) and math.isnan(model)):
        model = row.get("trained_as")
    return _key(row["method"], model, row.get("variant"), row.get("steps"), row.get("seed"), row.get("guidance"),
                row.get("grid_axis"))



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
        cls = methods.get_method(cfg.method)
        cells.append({**dataclasses.asdict(cell), "model": cfg.method,
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
    }
    if images is not None:
        doc["metrics"] = images.describe()
    atomic_write_text(results_dir / "spec.json", json.dumps(doc, indent=2, default=str))
