"""Across training seeds: the aggregate view of a results table, and which differences are real.

results.csv keeps one row per (sampler, model, steps, seed). `summarise` groups the rows of one
sampler cell over its seeds and gives, per metric, the mean, the standard deviation (ddof 1), the
number of seeds n and a 95% Student-t interval, mean ± t(0.975, n-1) * std / sqrt(n), which
summary.csv holds. A timing flagged as a measurement error (bench/measure/timing.py) never enters a mean:
its efficiency is dropped, and the row says how many seeds were flagged.

Two rows differ significantly in a metric only when their intervals do not overlap; otherwise
they are "not distinguishable at n seeds". Non-overlap of two 95% intervals is a conservative
test (it implies p < 0.05 and more), chosen because a reader can check it by eye in the table.
With one seed there is no interval, and no difference is called significant.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.files import atomic_write_text
from bench.results.schema import FLOOR, METRIC, METRICS, key_text
from bench.results.store import read_results

LEVEL = 0.95
GROUP = ["sampler", "label", "variant", "model", "steps", "guidance", "nfe_target"]
SPEED = ["nfe_measured", "sample_ms_per_100", "forward_ms_per_100", "sampler_efficiency", "sample_ref_per_100"]
FLAG = "measurement error"  # timing_flag of a run whose efficiency came out above 1 twice (bench/measure/timing.py)


def half_width(std: float, n: int) -> float:
    """Half the 95% Student-t interval of a mean of n values; nan for n < 2."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(sps.t.ppf((1 + LEVEL) / 2, n - 1) * std / math.sqrt(n))


def is_flag(value) -> bool:
    """Whether a timing_flag cell marks a measurement error (empty cells read back as NaN)."""
    return isinstance(value, str) and len(value) > 0


def flagged_seeds(value) -> str:
    """'1 of 3 seeds' from a cell over seeds' timing_flag (written by summarise); '' for one run's."""
    return value.removeprefix(FLAG).strip(" ()") if is_flag(value) else ""


def flagged(df: pd.DataFrame) -> pd.Series:
    if "timing_flag" not in df:
        return pd.Series(False, index=df.index)
    return df["timing_flag"].map(is_flag).astype(bool)


def _text(col: pd.Series) -> pd.Series:
    """A grouping key, as results rows are keyed (bench/results/schema.py key_text)."""
    return col.map(key_text)


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per sampler cell: identity columns, `n_seeds`, `seeds`, and per metric its mean (under
    the metric's own column name) with `_std`, `_n`, `_lo`, `_hi`."""
    if df.empty:
        return df.copy()
    df = df.copy()
    bad = flagged(df)
    if "sampler_efficiency" in df:
        df.loc[bad, "sampler_efficiency"] = np.nan
    df["_flagged"] = bad
    keys = [c for c in GROUP if c in df]
    values = [c for c in [m.column for m in METRICS] + SPEED if c in df]
    out = []
    for _, g in df.groupby([_text(df[k]) for k in keys], sort=False):
        first = g.iloc[0]
        row = {k: first[k] for k in keys}
        seeds = sorted(int(s) for s in g["seed"].dropna()) if "seed" in g else []
        row.update(n_seeds=len(g), seeds=",".join(map(str, seeds)))
        for c in values:
            v = pd.to_numeric(g[c], errors="coerce").dropna().to_numpy(dtype=float)
            n = len(v)
            mean = float(v.mean()) if n else math.nan
            std = float(v.std(ddof=1)) if n > 1 else math.nan
            h = half_width(std, n)
            row.update({c: mean, f"{c}_std": std, f"{c}_n": n, f"{c}_lo": mean - h, f"{c}_hi": mean + h})
        for c in ("checkpoint_step", "nfe_declared", "sample_ms_per_100_iqr"):
            if c in g:
                row[c] = g[c].iloc[0] if c != "sample_ms_per_100_iqr" else pd.to_numeric(g[c]).median()
        k = int(g["_flagged"].sum())
        row["timing_flag"] = f"{FLAG} ({k} of {len(g)} seeds)" if k else ""
        out.append(row)
    return pd.DataFrame(out)


def seeded(df: pd.DataFrame) -> bool:
    """Whether some sampler cell has rows from more than one seed."""
    models = df[df["sampler"] != FLOOR] if "sampler" in df else df
    if models.empty or "seed" not in models:
        return False
    keys = [_text(models[k]) for k in GROUP if k in models]
    return bool((models.groupby(keys)["seed"].nunique() > 1).any())


def write_summary(results_dir: Path) -> Path | None:
    """summary.csv beside results.csv (rewritten whole, atomically); None for an empty table."""

    df = read_results(results_dir)
    if df.empty:
        return None
    path = Path(results_dir) / "summary.csv"
    atomic_write_text(path, summarise(df).to_csv(index=False))
    return path


def interval(row: pd.Series, col: str) -> tuple[float, float]:
    lo, hi = row.get(f"{col}_lo", math.nan), row.get(f"{col}_hi", math.nan)
    return float(lo) if pd.notna(lo) else math.nan, float(hi) if pd.notna(hi) else math.nan


def compare_rows(a: pd.Series, b: pd.Series, col: str) -> int:
    """+1 if a is significantly better than b in `col`, -1 if worse, 0 if not distinguishable."""
    (alo, ahi), (blo, bhi) = interval(a, col), interval(b, col)
    if not all(math.isfinite(v) for v in (alo, ahi, blo, bhi)):
        return 0
    higher = METRIC[col].higher_is_better
    if alo > bhi:
        return 1 if higher else -1
    if blo > ahi:
        return -1 if higher else 1
    return 0


def mean_pm(row: pd.Series, col: str) -> str:
    """'mean ± half-width' in the metric's format (the mean alone with one seed)."""
    fmt = METRIC[col].fmt if col in METRIC else "{:.2f}"
    if fmt == "{:.0f}" and row.get(f"{col}_n", 1) > 1:  # a count averaged over seeds
        fmt = "{:.1f}"
    mean = row.get(col)
    if mean is None or pd.isna(mean):
        return "–"
    lo, hi = interval(row, col)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return fmt.format(mean)
    return f"{fmt.format(mean)} ± {fmt.format((hi - lo) / 2)}"


def significance_lines(summary: pd.DataFrame, columns: list[str]) -> list[str]:
    """For each metric and each sampler family with several rows: the pairs whose intervals do not
    overlap, and how many pairs are not distinguishable."""
    models = summary[summary["sampler"] != FLOOR]
    if models.empty or "n_seeds" not in models or models["n_seeds"].max() < 2:
        return []
    n = int(models["n_seeds"].min())
    seeds = f"{n} seeds" if n == models["n_seeds"].max() else f"{n}-{int(models['n_seeds'].max())} seeds"
    out = []
    for col in columns:
        if col not in models or models[col].isna().all():
            continue
        for sampler, g in models.groupby("sampler", sort=True):
            g = g[g[col].notna()]
            if len(g) < 2:
                continue
            better, same = [], 0
            rows = list(g.iterrows())
            for i, (_, a) in enumerate(rows):
                for _, b in rows[i + 1:]:
                    c = compare_rows(a, b, col)
                    if c == 0:
                        same += 1
                        continue
                    hi, lo = (a, b) if c > 0 else (b, a)
                    better.append(f"{hi['label']} ({mean_pm(hi, col)}) better than {lo['label']} ({mean_pm(lo, col)})")
            header = f"**{METRIC[col].header}**, {sampler} rows ({seeds}, 95% intervals):"
            if better:
                out.append(f"{header} significantly different (intervals do not overlap): " + "; ".join(better)
                           + f". Not distinguishable at {seeds}: the other {same} pair{'s' * (same != 1)}.")
            else:
                out.append(f"{header} no two rows are distinguishable at {seeds} (every pair of intervals overlaps).")
    return out
