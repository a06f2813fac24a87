"""A results folder read as untrusted input: `bench report` validates all of it before it writes.

A folder may come from another machine, an older version or a hand edit. Everything the report
reads is checked here first, each problem a one-line BenchError naming the file and the fix:
results.csv parses and has the identity columns; every known numeric column holds numbers;
spec.json is an object whose known fields have their types; every sample file loads; and the
report folder recorded in spec.json stays beside the results (an absolute or escaping path is
refused: pass --out to write elsewhere).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.results.schema import COLUMNS, INTEGER, METRICS, SPEED, upgrade_columns
from bench.files import safe_name

REQUIRED = ["sampler", "label"]
TEXT_SPEED = {"timing_flag"}
# numeric columns: the schema's, every column a registered metric writes (kid_std, ...), and the std
# column of results written before the interleaved timing
NUMERIC = sorted(set(INTEGER) | {c for m in METRICS for c in m.columns} | (set(SPEED) - TEXT_SPEED)
                 | {"sample_ms_per_100_std"})
SPEC_TYPES = {"name": str, "suite": str, "dataset": str, "preset": str, "report_dir": str, "grid": dict,
              "notes": list, "versions": dict, "metrics": (dict, type(None)), "seeding": str, "device": str,
              "git_sha": str, "cells": list, "command": str}


def load(results_dir: Path) -> tuple[pd.DataFrame, dict]:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise BenchError(f"{results_dir} is not a folder; give a results folder written by `bench compare`")
    csv, spec_path = results_dir / "results.csv", results_dir / "spec.json"
    if not csv.exists() or not spec_path.exists():
        raise BenchError(f"{results_dir} has no results.csv and spec.json; give a folder written by `bench compare`")
    return _results(csv), _spec(spec_path)


def _results(csv: Path) -> pd.DataFrame:
    try:
        df = upgrade_columns(pd.read_csv(csv))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as e:
        raise BenchError(f"{csv} is corrupt ({str(e).splitlines()[0]}); measure again with `bench compare`") from None
    if "model" not in df and "trained_as" in df:  # results written before samplers were split from models
        df["model"] = df["trained_as"]
    missing = [c for c in REQUIRED if c not in df]
    if missing:
        raise BenchError(f"{csv} lacks the column(s) {', '.join(missing)}; it was not written by `bench compare`")
    for col in NUMERIC:
        if col in df and not pd.api.types.is_numeric_dtype(df[col]):
            values = pd.to_numeric(df[col], errors="coerce")
            bad = df[col][values.isna() & df[col].notna()]
            if len(bad):
                raise BenchError(f"{csv}: column {col} holds a non-number ({str(bad.iloc[0])[:40]!r}); fix or delete"
                                 " the row")
            df[col] = values
    for col in COLUMNS:  # older folders lack newer columns: empty, as "not measured"
        if col not in df:
            df[col] = np.nan
    df["label"] = df["label"].astype(str)
    df["sampler"] = df["sampler"].astype(str)
    return df


def _spec(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is corrupt ({e}); measure again with `bench compare`") from None
    if not isinstance(spec, dict):
        raise BenchError(f"{path} holds a {type(spec).__name__}, not a spec written by `bench compare`")
    for key, kind in SPEC_TYPES.items():
        if key in spec and not isinstance(spec[key], kind):
            raise BenchError(f"{path}: {key} must be {_kind(kind)}, got {type(spec[key]).__name__}")
    for key in ("name", "suite", "dataset"):
        if key not in spec:
            raise BenchError(f"{path} lacks {key!r}; it was not written by `bench compare`")
    return spec


def _kind(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "a string", dict: "an object", list: "a list", type(None): "null"}[k] for k in kinds)


def report_dir(results_dir: Path, spec: dict, out: Path | None) -> Path:
    """Where the report goes: --out, else spec.json's report_dir, which must stay within the folder
    that holds the results folder (results/<x> -> reports/<x> is; /etc or ../../.. is not)."""
    if out is not None:
        return Path(out)
    recorded = spec.get("report_dir", ".")
    base = Path(results_dir).resolve()
    target = (base / recorded).resolve()
    root = base.parent.parent if base.parent != base else base
    if Path(recorded).is_absolute() or not target.is_relative_to(root):
        raise BenchError(f"{Path(results_dir) / 'spec.json'} names report folder {recorded!r}, outside {root}; pass"
                         " --out to choose where the report is written")
    return target


def check_samples(results_dir: Path, labels: list[str]) -> None:
    """Every sample file the report would draw loads as an array named `samples`."""
    for label in dict.fromkeys(labels):
        path = Path(results_dir) / "samples" / f"{safe_name(label)}.npz"
        if not path.exists():
            continue
        try:
            with np.load(path, allow_pickle=False) as f:
                if "samples" not in f.files or f["samples"].ndim not in (2, 4):
                    raise ValueError("no 2-D points or N x C x H x W images named samples")
        except (OSError, ValueError, TypeError, zipfile.BadZipFile, EOFError, AttributeError) as e:
            raise BenchError(f"{path} is not a readable sample file ({str(e)[:60] or type(e).__name__}); delete it"
                             " (its panel is left out) or measure again") from None
