"""The reading of per-mode spread (bench/metrics/spread.py): which rows draw their modes too narrow or too
wide, a failure the high-quality fraction and the mode counts cannot see."""

from __future__ import annotations

import json

import pandas as pd

from bench.report.readings.registry import Results, register
from bench.results.schema import FLOOR

OFF = 0.10  # a row is called narrow or wide when its spread ratio is more than 10% from the floor's: at 5000
# samples over 25 modes a mode's std is estimated from ~200 points (~5% error), ~1% once averaged over modes


def _rows(results: Results) -> tuple[pd.DataFrame, float | None]:
    df = results.rows
    if "mode_spread" not in df:
        return df.iloc[0:0], None
    ratio = pd.to_numeric(df["mode_spread"], errors="coerce")
    floor = ratio[df["sampler"] == FLOOR].dropna()
    rows = df.assign(ratio=ratio)
    rows = rows[(rows["sampler"] != FLOOR) & rows["ratio"].notna()]
    return rows, float(floor.iloc[0]) if len(floor) else None


def _uncovered(df: pd.DataFrame) -> list[str]:
    """Rows scored on a mixture (their `modes` is a number) that cover no mode."""
    if "modes" not in df or "mode_spread" not in df:
        return []
    modes = pd.to_numeric(df["modes"], errors="coerce")
    return list(df.loc[(df["sampler"] != FLOOR) & (modes == 0) & df["mode_spread"].isna(), "label"].astype(str))


def _interval(row: pd.Series) -> str:
    """The row's 95% interval of the ratio: over training seeds (X_lo, X_hi), else the bootstrap over samples."""
    lo, hi = row.get("mode_spread_lo"), row.get("mode_spread_hi")
    if (lo is None or pd.isna(lo)) and isinstance(row.get("bootstrap_ci"), str):
        try:
            lo, hi = json.loads(row["bootstrap_ci"]).get("mode_spread", (None, None))
        except (ValueError, TypeError, AttributeError):
            lo = hi = None  # an untrusted results folder: no interval rather than no report
    return f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None and pd.notna(lo) and pd.notna(hi) else ""


@register("spread", order=45, title="Mode spread")
def spread(results: Results, spec: dict) -> str | None:
    """Rows whose modes are too narrow or too wide against the data floor, then how many are within 10%."""
    rows, floor = _rows(results)
    if rows.empty:
        return None
    ref = floor if floor is not None else 1.0
    lines = ["Within each covered mode, the samples' standard deviation over the mode's own (`mode_spread`,"
             " geometric mean over covered modes; 1 is the right width). The reference is "
             + (f"the data floor's {floor:.3f}" if floor is not None else "1 (no floor row)")
             + f"; a row more than {OFF:.0%} from it is named below. The high-quality fraction counts samples"
             " within 3 std, so a mode drawn too narrow scores well there.", ""]
    narrow = rows[rows["ratio"] < ref * (1 - OFF)].sort_values("ratio")
    wide = rows[rows["ratio"] > ref * (1 + OFF)].sort_values("ratio", ascending=False)
    for what, part in (("Too narrow", narrow), ("Too wide", wide)):
        if len(part):
            named = ", ".join(f"{r['label']} {r['ratio']:.2f}{_interval(r)}" for _, r in part.iterrows())
            lines.append(f"- {what}: {named}.")
    lines.append(f"- Within {OFF:.0%} of the reference: {len(rows) - len(narrow) - len(wide)} of {len(rows)} rows.")
    if len(none := _uncovered(results.rows)):
        lines.append(f"- No covered mode, so no width to measure: {', '.join(none)}.")
    return "\n".join(lines)
