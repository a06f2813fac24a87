"""One results row: a cell's sampler on its checkpoint, sampled, scored and timed; and the data floor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import methods
from bench.config.run import diff_configs
from bench.config.spec import Cell, CompareSpec
from bench.data.images import to_model
from bench.data.latent import LatentData
from bench.errors import BenchError
from bench.measure import runtime
from bench.measure.latent import latent_bpd, latent_columns
from bench.measure.sampling import cell_sampler, draw_samples, kept, save_diagnostics
from bench.shard import SINGLE, Shard
from bench.measure.timing import time_sampler
from bench.metrics.evaluate import evaluate, floor_samples, is_image_data
from bench.metrics.likelihood import bits_per_dim
from bench.results import stats
from bench.results.schema import FLOOR
from bench.files import safe_name
from bench.results.store import model_column
from bench.runs.folders import load_model, training_seconds
from bench.runs.stage import Stage


def cell_label(cell: Cell, sampler_label: str) -> str:
    """The sampler's label (`dpmpp-2m-10`), named after the variant when there is one, with
    `@<model>` when the model is not the sampler's default (`dpmpp-2m-10@oracle`), or the run folder's name
    for a run given as --model (`ddim-10@1a2b3c4d-ddpm-cifar10`)."""
    label = sampler_label.replace(cell.sampler, cell.variant, 1) if cell.variant else sampler_label
    label += f":{cell.grid}" if cell.grid else ""
    return label + (f"@{cell.model_label}" if cell.model_label else "")


def load_cell_model(cell: Cell, spec: CompareSpec, run_dir: Path, data, device: torch.device):
    """The model a cell samples: a trained checkpoint, or one built from the data (the oracle)."""
    expected = spec.run_config(cell)
    cls = methods.get_model(expected.model_name)
    if not cls.trainable:
        return cls.from_data(expected.model, data).to(device).eval(), expected, {"step": None}
    model, cfg, meta = load_model(run_dir, device=device)
    if cfg.run_id() != expected.run_id() or tuple(meta["data_shape"]) != tuple(data.shape):
        raise BenchError(f"{run_dir} does not hold the run this cell needs (config or data shape differs:"
                         f" {'; '.join(diff_configs(cfg, expected)[:2]) or meta['data_shape']}); delete it to retrain")
    return model, cfg, meta


def budget_note(cell: Cell, nfe: int) -> list[str]:
    """What a row says when its NFE budget could not be spent exactly."""
    if not cell.nfe_target or nfe == cell.nfe_target:
        return []
    return [f"NFE budget {cell.nfe_target} not met exactly: {cell.sampler} makes {nfe} network calls at"
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
    model, cfg, meta = load_cell_model(cell, spec, run_dir, LatentData(data, stage) if stage else data, device)
    runtime.prepare(model.denoisers(), precision=spec.precision, compile_=spec.compile, device=device)
    seed = spec.sampling_seed(cell)
    if diagnostics_dir is not None and cell.seed in (None, spec.seed_list[0]) and shard.main:
        save_diagnostics(model, diagnostics_dir / f"{safe_name(cell.variant or cfg.model_name)}.npz")
    key = (str(run_dir), cfg.model_name, seed)
    cache = per_checkpoint if per_checkpoint is not None else {}
    if key not in cache:
        cache[key] = latent_bpd(model) if stage else bits_per_dim(
            model, data, name=cfg.model_name, num_images=spec.bpd_images, seed=seed, device=device)
    likelihood, bpd_notes = cache[key]
    guidance = cell.guidance_spec()
    sampler = cell_sampler(model, cell.sampler, cell.steps, cell.options(), guidance=guidance, grid=cell.grid_spec(),
                           stage=stage)
    x, nfe, labels = draw_samples(sampler, model, n=spec.num_samples, seed=seed, batch=spec.sample_batch,
                                  device=device, to_data=data.to_data, classes=spec.classes, shard=shard)
    unconditional = guidance is not None and guidance.w is None  # the null class: no class was asked for
    metrics, notes = evaluate(data, x, seed=seed, images=images, bootstrap=spec.bootstrap,
                              labels=None if unconditional else labels)
    if hasattr(model, "nearest_distance"):  # the data oracle: how far samples land from its training images
        metrics["nn_dist"] = float(model.nearest_distance(to_model(x) if x.dtype == torch.uint8 else x).mean())
    if not shard.main:
        return None  # the main process times the sampler, alone on the machine's cores but for idle waiters
    timing = time_sampler(sampler, model.denoisers(), model.data_shape, device, spec.timing, seed=seed,
                          num_classes=model.num_classes(model.cfg), classes=spec.classes)
    if shard.world > 1:
        notes = notes + [f"sampled by {shard.world} processes; timed on process 0 alone, the others waiting"]
    latent = latent_columns(stage, device, spec.timing, seed) if stage else {}
    row = {
        **conditioning_columns(guidance, spec), "sampler": cell.sampler, "label": cell_label(cell, sampler.label),
        "variant": cell.variant, "grid_axis": cell.grid, "grid": getattr(sampler, "settings", {}).get("grid", ""),
        "final_sigma": getattr(sampler, "settings", {}).get("final_sigma"),
        "model": model_column(cell, cfg), "steps": cell.steps, "nfe_target": cell.nfe_target or None, "seed": seed,
        "num_samples": spec.num_samples, "nfe_declared": None if sampler.adaptive else sampler.nfe,
        "nfe_measured": nfe, **timing_columns(timing),
        **metrics, **likelihood,
        "train_s": training_seconds(run_dir) if type(model).trainable else None,
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
    """A Timing as results columns (bench/results/schema.py); `timing_flag` is empty unless it is an error."""
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
    row = {"sampler": FLOOR, "label": "data (floor)", "seed": seed, "num_samples": len(x),
           **metrics, "notes": "; ".join([first] + notes)}
    return row, kept(data, x)
