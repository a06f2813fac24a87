"""The report's reading of reflow: does the (k+1)-rectified flow beat the k-rectified flow with the
same sampler at the same step count (Liu et al. 2023's straightening claim)? Stated as measured,
whichever way it comes out. Which rows are which rectified flow comes from spec.json (each cell's
`key_params`, e.g. {"reflow": 1}, and its teacher's run id in `parents`), so the reading needs
nothing but the results folder."""

from __future__ import annotations

import json

import pandas as pd

from bench.report.readings.budgets import primary_metric
from bench.report.readings.registry import Results, as_bullets, register


def _pairs(spec: dict) -> list[tuple[tuple[str, str, int], tuple[str, str, int], int]]:
    """(student row, teacher row, the teacher's reflow count k) for every cell on a model with a `reflow`
    key whose teacher (its recorded parent run) is sampled by the same sampler, options and step count.
    Rows are (sampler, variant, steps). Pairing by the parent's run id, not by reflow count alone, keeps
    a k-rectified flow that is not the teacher (another network, another seed) out of the claim."""
    cells = [c for c in spec.get("cells", []) if (c.get("key_params") or {}).get("reflow") is not None]
    by_run = {}
    for c in cells:
        by_run.setdefault((c.get("run_id"), c["method"], int(c["steps"]), json.dumps(c.get("sampler"))), c)
    out = []
    for c in cells:
        teacher = (c.get("parents") or {}).get("teacher")
        t = by_run.get((teacher, c["method"], int(c["steps"]), json.dumps(c.get("sampler")))) if teacher else None
        if t is not None and t.get("seed") == c.get("seed"):
            out.append(((c["method"], c.get("variant") or "", int(c["steps"])),
                        (t["method"], t.get("variant") or "", int(t["steps"])), int(t["key_params"]["reflow"])))
    return out


def _row(df: pd.DataFrame, key: tuple[str, str, int]) -> pd.Series | None:
    sampler, variant, steps = key
    v = df["variant"].fillna("").astype(str) if "variant" in df else pd.Series("", index=df.index)
    hit = df[(df["sampler"] == sampler) & (v == variant) & (df["steps"] == steps)]
    return hit.iloc[0] if len(hit) else None


def straightening_reading(df: pd.DataFrame, spec: dict) -> list[str]:
    metric = primary_metric(df)
    pairs = _pairs(spec)
    if not pairs or metric is None:
        return []
    col, name, lower = metric
    out = []
    for student, teacher, k in sorted(pairs, key=lambda p: (p[0][0], p[0][2], p[0][1])):
        b, a = _row(df, student), _row(df, teacher)
        if a is None or b is None or pd.isna(a[col]) or pd.isna(b[col]):
            continue
        better = b[col] < a[col] if lower else b[col] > a[col]
        verdict = "beats" if better else ("ties" if b[col] == a[col] else "does not beat")
        extra = ""
        if "modes" in df and pd.notna(a.get("modes")) and pd.notna(b.get("modes")):
            extra = f"; modes {b['modes']:.0f} vs {a['modes']:.0f}"
        if "hq_fraction" in df and pd.notna(a.get("hq_fraction")):
            extra += f", high-quality fraction {b['hq_fraction']:.3f} vs {a['hq_fraction']:.3f}"
        sampler, steps = student[0], student[2]
        out.append(f"Straightening at {b['nfe_measured']:.0f} NFE ({sampler}, {steps} steps): the"
                   f" {k + 2}-rectified flow ({b['label']}) **{verdict}** the {k + 1}-rectified flow it was"
                   f" drawn from ({a['label']}) on {name} ({b[col]:.3f} vs {a[col]:.3f},"
                   f" {'lower' if lower else 'higher'} is better{extra}, the {k + 2}-rectified flow first);"
                   " one training seed each.")
    return out


@register("straightening", order=30)
def straightening(results: Results, spec: dict) -> str | None:
    return as_bullets(straightening_reading(results.rows, spec))
