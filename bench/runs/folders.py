"""Run folders: completion, their weights, and loading a trained model and building a sampler on it.

    <runs_dir>/<run id>-<model>-<dataset>[-<key params>]/
        config.json  env.json  stats.jsonl  checkpoints/step-XXXXXXXX/  preview.png
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

import methods
from bench.runs.checkpoint import load_weights, read_meta
from bench.config.run import latest_checkpoint
from bench.config.run import RunConfig
from bench.config.run import read_run_config
from bench.errors import BenchError
from methods.guidance import condition


def completed_step(run_dir: Path) -> int:
    """Step of the latest checkpoint, 0 if none."""
    ckpt = latest_checkpoint(run_dir)
    return int(read_meta(ckpt)["step"]) if ckpt else 0


def is_complete(run_dir: Path, cfg: RunConfig) -> bool:
    return (Path(run_dir) / "config.json").exists() and completed_step(run_dir) >= cfg.train.steps


def load_model(run_dir: Path, *, device: torch.device | str = "cpu",
                use_ema: bool = True) -> tuple[methods.Model, RunConfig, dict[str, Any]]:
    """The trained model of a run, from its latest checkpoint (EMA weights by default)."""
    cfg = read_run_config(run_dir)
    cls = methods.get_model(cfg.model_name)
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise BenchError(f"{run_dir} has no checkpoint yet; train it with `bench train ... --resume`")
    model_state, ema_state, meta = load_weights(ckpt)
    model = cls(cfg.model, tuple(meta["data_shape"]))
    try:
        model.load_state_dict(model_state)
        if use_ema:
            for name in cls.ema_modules:
                sub = {k[len(name) + 1:]: v for k, v in ema_state.items() if k.startswith(name + ".")}
                getattr(model, name).load_state_dict(sub)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise BenchError(f"checkpoint {ckpt} does not match the {cfg.model_name} architecture in its config.json"
                         f" ({first}); the run folder was modified: train again") from None
    return model.to(device).eval(), cfg, meta


def build_sampler(sampler: str, model: methods.Model, steps: int, options: Any, guidance=None, grid=None):
    """The named sampler built for `model` (a conditional model's: with its methods.guidance.Guidance, w = 0
    when None); a pairing or option it rejects is a one-line BenchError."""

    try:
        return condition(methods.get_sampler(sampler).build(model, steps, options, grid), model, guidance)
    except ValueError as e:
        raise BenchError(str(e)) from None


def weights_sha256(run_dir: Path, cfg) -> str:
    """What identifies the weights a cell samples: the sha256 of the latest checkpoint's weight files
    (from its meta.json), or "exact" for a model built from the data."""
    if not methods.get_model(cfg.model_name).trainable:
        return "exact"
    ckpt = latest_checkpoint(run_dir)
    if ckpt is None:
        raise BenchError(f"{run_dir} has no checkpoint after training; delete it and run again")
    files = read_meta(ckpt).get("files", {})
    weights = {k: v for k, v in files.items() if k.endswith(".safetensors")}  # not the optimizer state
    return hashlib.sha256(json.dumps(weights, sort_keys=True).encode()).hexdigest()[:16]


def training_seconds(run_dir: Path) -> float | None:
    """A run's training wall-clock in seconds (the last `elapsed_s` in stats.jsonl; resumed runs add up,
    held-out evaluation and checkpoints included), None when it logged none (an imported run)."""
    try:
        lines = (Path(run_dir) / "stats.jsonl").read_text().splitlines()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    for line in reversed(lines):
        try:
            value = json.loads(line).get("elapsed_s")
        except json.JSONDecodeError:
            continue
        if value is not None:
            return float(value)
    return None


def call_sampler(sampler, noise: torch.Tensor, generator: torch.Generator, labels: torch.Tensor | None):
    """One sampler call; labels only for a conditional model's sampler."""
    if labels is None:
        return sampler(noise, generator=generator)
    return sampler(noise, generator=generator, labels=labels.to(noise.device))
