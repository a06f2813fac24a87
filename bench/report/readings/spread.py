"""The reading of per-mode spread (bench/metrics/spread.py): which rows draw their modes too narrow or too
wide, a failure the high-quality fraction and the mode counts cannot see."""

from __future__ import annotations

import json

import pandas as pd

from bench.report.readings.registry import Results, register
from bench.results.schema import FLOOR

# Without intervals, a row is called narrow or wide when its ratio is more than 10% from the floor's: at 5000
# samples over 25 modes a mode's std is estimated from ~200 points (~5% error), ~1% once averaged over modes.
OFF = 0.10


def _interval(row: pd.Series) -> tuple[float, float] | None:
    """The row's 95% interval of the ratio: over training seeds (X_lo, X_hi), else the bootstrap over samples."""
    lo, hi = row.get("mode_spread_lo"), row.get("mode_spread_hi")
    if (lo is None or pd.isna(lo)) and isinstance(row.get("bootstrap_ci"), str):
        try:
            lo, hi = json.loads(row["bootstrap_ci"]).get("mode_spread", (None, None))
        except (ValueError, TypeError, AttributeError):
            lo = hi = None  # an untrusted results folder: no interval rather than no report
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return None
    return (lo, hi) if lo == lo and hi == hi else None


def _rows(results: Results) -> tuple[pd.DataFrame, pd.Series | None]:
    """The scored rows (with their ratio) and the floor row, if it was scored."""
    df = results.rows
    if "mode_spread" not in df:
        return df.iloc[0:0], None
    rows = df.assign(ratio=pd.to_numeric(df["mode_spread"], errors="coerce"))
    floor = rows[(rows["sampler"] == FLOOR) & rows["ratio"].notna()]
    return rows[(rows["sampler"] != FLOOR) & rows["ratio"].notna()], floor.iloc[0] if len(floor) else None


def _side(row: pd.Series, floor: pd.Series | None) -> int:
    """-1 too narrow, +1 too wide, 0 neither: by non-overlapping 95% intervals when the row and the floor both
    have one, else by more than OFF from the floor's ratio (1 without a floor)."""
    ref = float(floor["ratio"]) if floor is not None else 1.0
    mine, theirs = _interval(row), _interval(floor) if floor is not None else None
    if mine and theirs:
        return -1 if mine[1] < theirs[0] else 1 if mine[0] > theirs[1] else 0
    return -1 if row["ratio"] < ref * (1 - OFF) else 1 if row["ratio"] > ref * (1 + OFF) else 0


def _uncovered(df: pd.DataFrame) -> list[str]:
    """Rows scored on a mixture (their `modes` is a number) that cover no mode."""
    if "modes" not in df or "mode_spread" not in df:
        return []
    modes = pd.to_numeric(df["modes"], errors="coerce")
    return list(df.loc[(df["sampler"] != FLOOR) & (modes == 0) & df["mode_spread"].isna(), "label"].astype(str))


def _named(part: pd.DataFrame) -> str:
    out = []
    for _, r in part.iterrows():
        ci = _interval(r)
        out.append(f"{r['label']} {r['ratio']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""))
    return ", ".join(out)


@register("spread", order=45, title="Mode spread")
def spread(results: Results, spec: dict) -> str | None:
    """Rows whose modes are too narrow or too wide against the data floor, then how many are not."""
    rows, floor = _rows(results)
    if rows.empty:
        return None
    ci = _interval(floor) if floor is not None else None
    reference = (f"the data floor's {floor['ratio']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                 if floor is not None else "1 (no floor row)")
    lines = ["Within each covered mode, the samples' standard deviation over the mode's own (`mode_spread`,"
             f" geometric mean over covered modes; 1 is the right width). The reference is {reference}. A row is"
             " named below when its 95% interval lies wholly below or above the floor's (intervals over training"
             f" seeds, or a bootstrap over samples), or, without intervals, when it is more than {OFF:.0%} from the"
             " reference. The high-quality fraction counts samples within 3 std, so a mode drawn too narrow scores"
             " well there.", ""]
    side = rows.apply(lambda r: _side(r, floor), axis=1) if len(rows) else pd.Series(dtype=int)
    narrow, wide = rows[side < 0].sort_values("ratio"), rows[side > 0].sort_values("ratio", ascending=False)
    for what, part in (("Too narrow", narrow), ("Too wide", wide)):
        if len(part):
            lines.append(f"- {what}: {_named(part)}.")
    lines.append(f"- Neither: {len(rows) - len(narrow) - len(wide)} of {len(rows)} rows.")
    if len(none := _uncovered(results.rows)):
        lines.append(f"- No covered mode, so no width to measure: {', '.join(none)}.")
    return "\n".join(lines)
