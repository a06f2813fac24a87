"""The report's reading of reflow: does the (k+1)-rectified flow beat the k-rectified flow with the
same sampler at the same step count (Liu et al. 2023's straightening claim)? Stated as measured,
whichever way it comes out. Which rows are which rectified flow comes from spec.json (each cell's
`key_params`, e.g. {"reflow": 1}), so the reading needs nothing but the results folder."""

from __future__ import annotations

import math

import pandas as pd

from bench.budgets import primary_metric


def _reflow_of(spec: dict) -> dict[tuple[str, str, int], int]:
    """(sampler, model, steps) of each cell on a model with a `reflow` key -> its reflow count."""
    out = {}
    for cell in spec.get("cells", []):
        k = (cell.get("key_params") or {}).get("reflow")
        if k is not None:
            out[(cell["method"], cell.get("variant") or "", int(cell["steps"]))] = int(k)
    return out


def straightening_reading(df: pd.DataFrame, spec: dict) -> list[str]:
    reflow = _reflow_of(spec)
    metric = primary_metric(df)
    if not reflow or metric is None:
        return []
    col, name, lower = metric
    rows = df[df["method"].isin({m for m, _, _ in reflow})].copy()
    rows["reflow"] = [reflow.get((r["method"], r["variant"] if isinstance(r["variant"], str) else "", int(r["steps"])))
                      if not math.isnan(r["steps"]) else None for _, r in rows.iterrows()]
    rows = rows[rows["reflow"].notna() & rows[col].notna()]
    out = []
    for (method, steps), g in rows.groupby(["method", "steps"], sort=True):
        by_k = {int(r["reflow"]): r for _, r in g.iterrows()}
        for k in sorted(by_k):
            if k + 1 not in by_k:
                continue
            a, b = by_k[k], by_k[k + 1]
            better = b[col] < a[col] if lower else b[col] > a[col]
            verdict = "beats" if better else ("ties" if b[col] == a[col] else "does not beat")
            extra = ""
            if "modes" in g and pd.notna(a.get("modes")) and pd.notna(b.get("modes")):
                extra = f"; modes {b['modes']:.0f} vs {a['modes']:.0f}"
            if "hq_fraction" in g and pd.notna(a.get("hq_fraction")):
                extra += f", high-quality fraction {b['hq_fraction']:.3f} vs {a['hq_fraction']:.3f}"
            out.append(f"Straightening at {b['nfe_measured']:.0f} NFE ({method}, {int(steps)} steps): the"
                       f" {k + 2}-rectified flow **{verdict}** the {k + 1}-rectified flow on {name}"
                       f" ({b[col]:.3f} vs {a[col]:.3f}, {'lower' if lower else 'higher'} is better{extra}, the"
                       f" {k + 2}-rectified flow first); one training seed each.")
    return out
