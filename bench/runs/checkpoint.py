"""Checkpoints that survive kills and never execute code when loaded.

A checkpoint is a folder `checkpoints/step-XXXXXXXX/` holding
  model.safetensors   the model's weights
  ema.safetensors     EMA copies of the model's `ema_modules` (keys `<module>.<param>`)
  state.pt            optimizers, LR schedules, RNG and data-order state (tensors and plain
                      containers only; loaded with torch.load(weights_only=True))
  meta.json           step, method, dataset, data shape, and the sha256 of every file above
It is written into a temporary folder that is renamed into place only when complete,
so a kill during a save leaves the previous checkpoint as the latest. Loading checks
every checksum, so a truncated or tampered file is reported, not half-loaded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bench.config.run import CKPT_DIR, list_checkpoints
from bench.errors import BenchError
from bench.files import fsync_dir, file_sha256

FILES = ("model.safetensors", "ema.safetensors", "state.pt")


def _tensors_only(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(run_dir: Path, step: int, *, model: dict[str, torch.Tensor], ema: dict[str, torch.Tensor],
                    state: dict[str, Any], meta: dict[str, Any], keep: int) -> Path:
    """Write checkpoint `step` atomically and keep only the newest `keep` checkpoints."""
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_tensors_only(model), tmp / "model.safetensors")
    save_file(_tensors_only(ema), tmp / "ema.safetensors")
    torch.save(state, tmp / "state.pt")
    meta = dict(meta, step=step, files={name: file_sha256(tmp / name) for name in FILES})
    (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    for name in (*FILES, "meta.json"):
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return final


def read_meta(ckpt: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(ckpt) / "meta.json").read_text())
    except FileNotFoundError:
        raise BenchError(f"checkpoint {ckpt} has no meta.json: it is incomplete; delete it and resume") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BenchError(f"checkpoint {ckpt}/meta.json is corrupt; delete the checkpoint and resume") from None


def verify(ckpt: Path, names: tuple[str, ...] = FILES) -> dict[str, Any]:
    """Check the files' checksums against meta.json; returns the meta."""
    meta = read_meta(ckpt)
    for name in names:
        path = Path(ckpt) / name
        if not path.exists():
            raise BenchError(f"checkpoint {ckpt} is missing {name}; delete the checkpoint and resume from an earlier one")
        if meta.get("files", {}).get(name) != file_sha256(path):
            raise BenchError(f"checkpoint file {path} is corrupt (checksum mismatch: truncated or modified);"
                             f" delete {ckpt} to fall back to an earlier checkpoint")
    return meta


def load_weights(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, Any]]:
    """(model, ema, meta) of a verified checkpoint, for sampling."""
    meta = verify(ckpt, ("model.safetensors", "ema.safetensors"))
    try:
        return load_file(Path(ckpt) / "model.safetensors"), load_file(Path(ckpt) / "ema.safetensors"), meta
    except SafetensorError as e:  # pragma: no cover - checksums catch this first
        raise BenchError(f"checkpoint {ckpt} cannot be read: {e}") from None


def load_training_state(ckpt: Path) -> dict[str, Any]:
    """Optimizer/schedule/RNG state of a verified checkpoint; never unpickles code."""
    verify(ckpt, ("state.pt",))
    try:
        return torch.load(Path(ckpt) / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"it references {found.group(1)}" if found else str(e).strip().splitlines()[0]
        raise BenchError(f"checkpoint {ckpt}/state.pt cannot be loaded safely ({what}: only tensors and plain"
                         " containers are allowed); delete the checkpoint") from None
