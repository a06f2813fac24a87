"""Part (b) of the GPU campaign: MNIST models trained for a fixed wall-clock budget, then sampled for FID.

Training for a budget: bench's training loop stops at `train.steps`, so each model is first timed on a short
calibration run (its steps/s after warm-up, read from its stats.jsonl), and then trained as an ordinary,
complete run of steps = budget x steps/s (within [min_steps, max_steps]). The run's schedule (DDGAN's cosine
decay), EMA and checkpoint are those of a run of that many steps; its real wall-clock is in train.csv.

Rows (`rows_for`): the solver table on the DDPM (DDIM, DPM-Solver++(2M) and UniPC, x0 clipped to [-1, 1] as
in mnist-cpu) and Euler on the flow at each NFE budget, EDM's Heun sampler at each budget when `edm` and
`edm-heun` are registered, DDGAN at its trained T, and DDPM's 1000-step ancestral sampler last: it costs as
much as all other rows together, so it gets the time that is left (in whole sample blocks, the count recorded).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import torch

import methods
from bench.config.run import RunConfig, resolve_run_config
from bench.config.run import run_dir_for
from bench.config.presets import PRESETS_DIR, load_preset
from bench.config.values import load_toml, valid_keys
from bench.data.images import to_uint8
from bench.measure import runtime
from bench.measure.sampling import draw_samples
from bench.results.provenance import resolve_device
from bench.runs.folders import build_sampler, load_model, training_seconds
from bench.runs.train import train

MODELS = ("ddpm", "flow", "ddgan", "edm")
CLIPPED = {"clip_sample": True}  # eps solvers on MNIST: x0 clipped to [-1, 1] at each step (suite mnist-cpu)
SOLVERS = {"ddpm": [("ddim", CLIPPED), ("dpmpp-2m", CLIPPED), ("unipc", CLIPPED)], "flow": [("flow", {})],
           "edm": [("edm-heun", {})]}


def valid_sets(cls: type, sets: dict) -> dict:
    """The overrides among `sets` that `cls.Config` has (a model this campaign does not size, edm)."""
    keys = set(valid_keys(cls.Config, "model."))
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in sets.items() if k in keys}


def run_config(model: str, *, preset: str, data_dir: str, sets: dict) -> RunConfig:
    """The model's configuration on MNIST from `preset`; a model the preset has no section for (edm) borrows
    the ddpm section's network where its keys fit."""
    cls = methods.get_model(model)
    extra = {}
    if model not in _preset_sections(preset):
        net = load_preset(preset, "ddpm").get("model", {})
        extra = valid_sets(cls, {f"model.{k}": v for k, v in _flat(net).items()})
        sets = {**{k: v for k, v in sets.items() if not k.startswith("model.")},
                **valid_sets(cls, {k: v for k, v in sets.items() if k.startswith("model.")})}
    return resolve_run_config(model, model_cls=cls.Config, preset=preset, dataset="mnist",
                              flags={"data.root": data_dir},
                              sets={**extra, **{k: json.dumps(v) if isinstance(v, list) else v for k, v in sets.items()}})


def _preset_sections(preset: str) -> set[str]:
    path = Path(preset) if preset.endswith(".toml") else PRESETS_DIR / f"{preset}.toml"
    return set(load_toml(path, "preset"))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def steps_per_second(cfg: RunConfig, folder: Path, *, steps: int, log) -> float:
    """The training rate of `cfg` after warm-up: a throwaway run of `steps` steps, the rate of its second half."""
    shutil.rmtree(folder, ignore_errors=True)
    half = max(1, steps // 2)
    cal = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=2 * half, log_every=half,
                                                             ckpt_every=2 * half, preview_samples=0))
    train(cal, folder, progress=False, log=log, runs_dir=folder.parent)
    records = [json.loads(line) for line in (folder / "stats.jsonl").read_text().splitlines() if line.strip()]
    rate = [r["steps_per_s"] for r in records if "steps_per_s" in r][-1]
    shutil.rmtree(folder, ignore_errors=True)
    return float(rate)


def train_for_budget(model: str, *, seconds: float, preset: str, data_dir: str, runs_dir: Path, sets: dict,
                     calibration_steps: int, min_steps: int, max_steps: int, log) -> tuple[Path, dict]:
    """Train `model` for about `seconds`; returns its run folder and its train.csv row."""
    cfg = run_config(model, preset=preset, data_dir=data_dir, sets=sets)
    rate = steps_per_second(cfg, runs_dir / f"calibration-{model}", steps=calibration_steps, log=lambda _: None)
    steps = int(min(max(seconds * rate, min_steps), max_steps))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, steps=steps, ckpt_every=steps,
                                                             log_every=max(1, steps // 20), preview_samples=0))
    run_dir = run_dir_for(cfg, runs_dir)
    shutil.rmtree(run_dir, ignore_errors=True)  # a leftover of an earlier campaign in the same work folder
    log(f"training {model}: {steps} steps (calibrated {rate:.1f} steps/s for a {seconds:g} s budget)")
    t0 = time.perf_counter()
    train(cfg, run_dir, progress=False, log=lambda _: None, runs_dir=runs_dir)
    wall = time.perf_counter() - t0
    stats = [json.loads(line) for line in (run_dir / "stats.jsonl").read_text().splitlines() if line.strip()]
    last = stats[-1] if stats else {}
    cls = methods.get_model(model)
    net = cls(cfg.model, _shape(cfg))
    row = {"model": model, "run": run_dir.name, "run_id": cfg.run_id(), "preset": preset, "budget_s": seconds,
           "calibrated_steps_per_s": round(rate, 2), "steps": steps, "batch": cfg.train.batch_size,
           "train_s": training_seconds(run_dir), "wall_s": round(wall, 1),
           "parameters_m": round(sum(p.numel() for d in net.denoisers() for p in d.parameters()) / 1e6, 2),
           **{k: round(float(v), 5) for k, v in last.items() if k.endswith("loss")},
           "config": json.dumps(cfg.semantic_dict(), sort_keys=True)}
    return run_dir, row


def _shape(cfg: RunConfig) -> tuple[int, int, int]:
    side = cfg.data.resolution or 28
    return (1, side, side)


@dataclasses.dataclass(frozen=True)
class Row:
    model: str
    sampler: str
    nfe: int  # the budget (DDGAN: its T; DDPM: its T)
    options: tuple = ()

    @property
    def deferred(self) -> bool:  # DDPM's ancestral sampler: the time that is left, last
        return self.sampler == "ddpm"


def rows_for(model: str, nfe: list[int], *, T: int | None = None) -> list[Row]:
    if model == "ddgan":
        return [Row("ddgan", "ddgan", T or 4)]
    rows = [Row(model, s, n, tuple(sorted(o.items()))) for n in nfe for s, o in SOLVERS.get(model, [])
            if s in methods.list_samplers()]
    if model == "ddpm":
        rows.append(Row("ddpm", "ddpm", T or 1000, (("clip_sample", True),)))
    return rows


def sample_row(row: Row, run_dir: Path, *, n: int, batch: int, seed: int, precision: str, device: str) -> dict:
    """`n` samples of one row as uint8 (N x 1 x 28 x 28) and its index entry (without the file)."""
    dev = resolve_device(device)
    model, cfg, meta = load_model(run_dir, device=dev)
    runtime.prepare(model.denoisers(), precision=precision, device=dev)
    cls = methods.get_sampler(row.sampler)
    opts = cls.Options(**dict(row.options))
    if row.sampler in ("ddgan", "ddpm"):
        steps = row.nfe
    else:
        steps = cls.steps_for_nfe(row.nfe, type(model), cfg.model, opts)
        if steps is None:
            raise ValueError(f"{row.sampler}: no step count fits NFE {row.nfe}")
    sampler = build_sampler(row.sampler, model, steps, opts)
    t0 = time.perf_counter()
    x, nfe, _ = draw_samples(sampler, model, n=n, seed=seed, batch=min(batch, n), device=dev, to_data=to_uint8,
                             require_finite=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    label = sampler.label if row.model != "ddgan" else f"ddgan-T{steps}"
    return {"label": label, "samples": x.numpy(), "model": row.model, "sampler": row.sampler, "steps": steps,
            "nfe_target": row.nfe if row.sampler not in ("ddgan", "ddpm") else None,
            "nfe_declared": sampler.nfe, "nfe_measured": nfe, "num_samples": n, "seed": seed,
            "batch": min(batch, n), "sample_s": round(seconds, 2), "run_dir": run_dir.name, "run_id": cfg.run_id(),
            "checkpoint_step": meta["step"], "dataset": "mnist", "layout": "N x C x H x W uint8",
            "shape": list(x.shape), "sampler_settings": sampler.settings,
            **runtime.describe(precision, False)}
