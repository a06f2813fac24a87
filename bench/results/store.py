"""results.csv of one grid: reading and writing it, and which rows a comparison can keep."""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from bench.config.spec import Cell, CompareSpec
from bench.errors import BenchError
from bench.files import atomic_write_text
from bench.results.provenance import cpu_affinity
from bench.results.provenance import device_name
from bench.results.schema import COLUMNS, FLOOR, INTEGER, key_text, upgrade_columns
from bench.files import safe_name


def read_spec(results_dir: Path) -> dict | None:
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
        return upgrade_columns(pd.read_csv(path, keep_default_na=True))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is corrupt ({e}); delete it to measure again") from None


def write_results(results_dir: Path, rows: list[dict]) -> None:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in INTEGER:
        df[col] = pd.to_numeric(df[col]).round().astype("Int64")
    atomic_write_text(results_dir / "results.csv", df.to_csv(index=False))


class ResultsStore:
    """results.csv of one grid: the rows worth keeping (a row measured from other weights, or a floor row
    from other code or another device, is dropped to be measured again), the identities already done,
    and `save`, which rewrites the CSV atomically with each new row (only where `writer`)."""

    def __init__(self, results_dir: Path, spec: CompareSpec, run_cfgs: dict, weights: dict, *, code: str,
                 device: torch.device, writer: bool, log: Callable[[str], None]):
        self.results_dir, self.spec, self.writer = results_dir, spec, writer
        wanted = {cell_key(c, spec, run_cfgs): weights[c] for c in spec.cells}
        self.rows, stale = [], 0
        for r in read_results(results_dir).to_dict("records"):
            key = key_of_row(r)
            if key in wanted and r.get("weights_sha256") != wanted[key]:
                stale += 1  # measured from other weights: measured again
                continue
            if r.get("sampler") == FLOOR and (r.get("git_sha"), r.get("device")) != (code, device_name(device)):
                stale += 1  # a floor row has no weights: it is kept only from this code on this device
                continue
            self.rows.append(r)
        if stale:
            log(f"{stale} rows in {results_dir} were measured from other weights, other code (the floor) or before"
                " weights were recorded: measuring them again")
            if writer:
                write_results(results_dir, self.rows)
        self.done = {key_of_row(r) for r in self.rows}
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
    return f"{cfg.model_name}-latent" if cfg.data.latent else cfg.model_name


def cell_key(cell: Cell, spec: CompareSpec, run_cfgs: dict) -> tuple[str, ...]:
    return row_key(cell.sampler, model_column(cell, run_cfgs[cell]), cell.variant, cell.steps, spec.sampling_seed(cell),
                cell.guidance, cell.grid)


def row_key(sampler, model, variant, steps, seed, guidance="", grid="") -> tuple[str, ...]:
    """Identity of a row within one grid (bench/results/schema.py key_text); `grid` is the cell's grid axis value
    (empty for the sampler's default grid)."""
    return tuple(key_text(v) for v in (sampler, model, variant, steps, seed, guidance, grid))


def key_of_row(row: dict) -> tuple[str, ...]:
    """A results row's identity; rows written before the `model` column name it `trained_as`."""
    model = row.get("model")
    if model is None or (isinstance(model, float) and math.isnan(model)):
        model = row.get("trained_as")
    return row_key(row["sampler"], model, row.get("variant"), row.get("steps"), row.get("seed"), row.get("guidance"),
                row.get("grid_axis"))
