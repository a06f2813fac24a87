"""The report's reading of few-step models: each consistency-model row set beside the trained-per-T
GAN rows (DDGAN) and beside the best solver on a trained diffusion model at the same or a lower
NFE, metric by metric, with the numbers as measured.

Which rows are which comes from the model's registration (`kind` and `time` in methods/), never
from method names, so a new consistency or GAN-like model joins the reading by registering.
"""

from __future__ import annotations

import pandas as pd

import methods
from bench.report.readings.budgets import primary_metric, rank_rows
from bench.report.readings.registry import Results, as_bullets, register
from bench.report.tables import sampler_columns
from bench.results.schema import FLOOR, METRIC

SOLVER_KINDS = {"eps", "x0", "v", "velocity"}  # a prediction an ODE/SDE solver integrates


def _registration(model) -> tuple[str, str] | None:
    """(kind, time) of a registered model; None for names this version lacks (a foreign folder)."""

    try:
        cls = methods.get_model(str(model))
    except Exception:
        return None
    return cls.kind, cls.time


def _groups(rows: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Rows split into consistency rows, GAN rows (a trained step count) and trained-solver rows."""
    reg = {m: _registration(m) or ("", "") for m in rows["model"].dropna().unique()}
    kind, time = (rows["model"].map(lambda m, i=i: reg[m][i]) for i in (0, 1))
    trained = rows["checkpoint_step"].notna() if "checkpoint_step" in rows else pd.Series(True, rows.index)
    return {"consistency": rows[kind == "consistency"],
            "gan": rows[(kind == "sample") & (time == "trained")],
            "solver": rows[kind.isin(SOLVER_KINDS) & trained]}


def _compare(a: pd.Series, b: pd.Series, cols: list[str]) -> str:
    """'better on X (a vs b); worse on Y (...); equal on Z (...)', a's values first."""
    better, worse, equal = [], [], []
    for col in cols:
        va, vb = a.get(col), b.get(col)
        if va is None or vb is None or pd.isna(va) or pd.isna(vb):
            continue
        sa, sb = (METRIC[col].fmt.format(v) for v in (va, vb))
        text = f"{METRIC[col].header} ({sa} vs {sb})"
        if sa == sb:
            equal.append(text)
        elif (va > vb) == METRIC[col].higher_is_better:
            better.append(text)
        else:
            worse.append(text)
    parts = [f"{word} on " + ", ".join(items) for word, items in
             (("better", better), ("worse", worse), ("equal", equal)) if items]
    ta, tb = a.get("sample_ms_per_100"), b.get("sample_ms_per_100")
    if ta is not None and tb is not None and not pd.isna(ta) and not pd.isna(tb) and ta > 0:
        ratio = tb / ta
        pace = ("about as fast" if abs(ratio - 1) < 0.05 else
                f"{ratio:.1f}× faster" if ratio > 1 else f"{1 / ratio:.1f}× slower")
        parts.append(f"{pace} ({ta:.1f} vs {tb:.1f} ms / 100 samples)")
    return "; ".join(parts) if parts else "no metric in common"


def _nfe(row: pd.Series) -> str:
    n = row.get("nfe_measured")
    return "? NFE" if n is None or pd.isna(n) else f"{n:.0f} NFE"


def fewstep_reading(df: pd.DataFrame, cols: list[str]) -> list[str]:
    """One line per consistency row against each GAN row and against the best solver within its NFE.

    `cols` are the per-sampler metric columns the report shows; the best solver is ranked by the
    table's primary metric. With seeds, the rows are means (the significance lines say which
    differences the intervals resolve)."""
    if "model" not in df or "nfe_measured" not in df:
        return []
    rows = df[(df["sampler"] != FLOOR) & df["model"].notna()]
    g = _groups(rows)
    if g["consistency"].empty or (g["gan"].empty and g["solver"].empty):
        return []
    cols = [c for c in cols if c in METRIC and c in df]
    metric = primary_metric(df)
    seeds = int(df["n_seeds"].max()) if "n_seeds" in df and df["n_seeds"].notna().any() else 1
    out = [f"Few-step models compared metric by metric ({'means over ' + str(seeds) + ' training seeds' if seeds > 1 else 'one training seed each'};"
           " the first value is the consistency row's):"]
    for _, r in g["consistency"].iterrows():
        name = r["label"]
        for _, gan in g["gan"].iterrows():
            out.append(f"**{name}** ({_nfe(r)}) against **{gan['label']}** ({_nfe(gan)}): {_compare(r, gan, cols)}.")
        n = r.get("nfe_measured")
        if metric is None or n is None or pd.isna(n):
            continue
        col, mname, lower = metric
        within = rank_rows(g["solver"][g["solver"]["nfe_measured"] <= n], col, lower)
        if within.empty:
            out.append(f"**{name}** ({_nfe(r)}): no solver row on a trained diffusion model within {n:.0f} NFE.")
            continue
        best = within.iloc[0]
        out.append(f"**{name}** ({_nfe(r)}) against the best solver within {n:.0f} NFE by {mname},"
                   f" **{best['label']}** on {best['model']} ({_nfe(best)}): {_compare(r, best, cols)}.")
    return out if len(out) > 1 else []


@register("fewstep", order=40)
def fewstep(results: Results, spec: dict) -> str | None:
    return as_bullets(fewstep_reading(results.rows, sampler_columns(results.rows, spec)))
