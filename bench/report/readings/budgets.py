"""Samplers compared at equal cost: the best sampler within each NFE budget, per model, and where
the exact-score oracle and a trained model rank the samplers differently.

A pure function of a results table. A budget B admits every row that made at most B network
calls (measured); the rows of one model are ranked by the table's primary quality metric. Rows
without a checkpoint step come from a model with no training (the exact-score oracle): their
ranking is each sampler's discretisation error alone.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.results.schema import FLOOR, METRIC

# the first of these columns with values ranks the samplers (names and directions: bench/schema.py METRICS)
PRIMARY = ["fid", "swd", "fd_classifier", "kid"]


def primary_metric(df: pd.DataFrame) -> tuple[str, str, bool] | None:
    for col in PRIMARY:
        if col in df and df[col].notna().any():
            return col, METRIC[col].header, not METRIC[col].higher_is_better
    return None


def budgets(df: pd.DataFrame) -> list[int]:
    """The NFE budgets the grid was chosen by (empty when it was chosen by steps)."""
    if "nfe_target" not in df:
        return []
    return sorted(int(b) for b in df["nfe_target"].dropna().unique())


def with_groups(df: pd.DataFrame) -> pd.DataFrame:
    """`group`: the model, or with a grid axis "model, grid G" (G: the row's grid on the axis, else the grid it
    was sampled on), so that a budget is ranked within one model and one grid."""
    df = df.copy()
    axis = df["grid_axis"] if "grid_axis" in df else pd.Series("", index=df.index)
    axis = axis.where(axis.notna() & (axis.astype(str) != ""), "")
    if not (axis != "").any():
        df["group"] = df["model"]
        return df
    own = df["grid"].fillna("").astype(str) if "grid" in df else pd.Series("", index=df.index)
    grid = axis.where(axis != "", own)
    df["group"] = [f"{m}, grid {g}" if g else str(m) for m, g in zip(df["model"], grid)]
    return df


def model_name(df: pd.DataFrame, group: str) -> str:
    rows = df[df["group"] == group]
    untrained = "checkpoint_step" in rows and rows["checkpoint_step"].isna().all()
    return f"{group} (exact score, no network)" if untrained else f"{group} (trained)"


def sampler_of(row: pd.Series) -> str:
    """A row's sampler, or its variant's name when it has one."""
    variant = row.get("variant")
    return variant if isinstance(variant, str) and variant else row["sampler"]


def rank_rows(rows: pd.DataFrame, col: str, lower: bool) -> pd.DataFrame:
    return rows[rows[col].notna()].sort_values(col, ascending=lower)


def best_table(df: pd.DataFrame) -> str | None:
    """Markdown: for each budget and model, the best row within the budget and its metric."""
    metric, found = primary_metric(df), budgets(df)
    rows = df[(df["sampler"] != FLOOR) & df["model"].notna()] if "model" in df else df.iloc[0:0]
    if metric is None or not found or rows.empty:
        return None
    col, name, lower = metric
    rows = with_groups(rows)
    models = list(dict.fromkeys(rows["group"]))
    head = ["NFE budget"] + [f"best on {model_name(rows, m)}" for m in models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in found:
        cells = [f"≤ {b}"]
        for m in models:
            ranked = rank_rows(rows[(rows["group"] == m) & (rows["nfe_measured"] <= b)], col, lower)
            cells.append("–" if ranked.empty else
                         f"{ranked.iloc[0]['label']} ({name} {ranked.iloc[0][col]:.4g})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_reading(df: pd.DataFrame) -> list[str]:
    """Plain-language lines: the winner at each budget on each model, and every budget at which two
    models order the samplers differently (rows chosen for exactly that budget)."""
    metric, found = primary_metric(df), budgets(df)
    if metric is None or not found or "model" not in df:
        return []
    col, name, lower = metric
    rows = with_groups(df[(df["sampler"] != FLOOR) & df["model"].notna()])
    models = list(dict.fromkeys(rows["group"]))
    out = []
    floor = df.loc[df["sampler"] == FLOOR, col].dropna()
    if len(floor):
        near = rows[rows[col] <= 1.1 * floor.iloc[0]]
        out.append(f"Real data scores {name} {floor.iloc[0]:.4g} at this sample count (the floor row):"
                   f" {len(near)} rows are within 10% of it, where rankings are mostly sampling noise.")
    for m in models:
        wins = []
        for b in found:
            ranked = rank_rows(rows[(rows["group"] == m) & (rows["nfe_measured"] <= b)], col, lower)
            if len(ranked):
                wins.append(f"≤ {b}: {sampler_of(ranked.iloc[0])} ({ranked.iloc[0][col]:.4g})")
        if wins:
            out.append(f"Best {name} within each NFE budget on **{model_name(rows, m)}**: " + "; ".join(wins) + ".")
    for b in found:
        orders = {}
        for m in models:
            at = rank_rows(rows[(rows["group"] == m) & (rows["nfe_target"] == b)], col, lower)
            orders[m] = [sampler_of(r) for _, r in at.iterrows()]
        common = set.intersection(*(set(o) for o in orders.values())) if orders else set()
        shared = {m: [s for s in o if s in common] for m, o in orders.items()}
        if len(models) > 1 and len(common) > 1 and len({tuple(o) for o in shared.values()}) > 1:
            tau = kendall_tau(*[shared[m] for m in models[:2]])
            out.append(f"At NFE {b} the models rank the samplers differently by {name} (best first; Kendall tau"
                       f" {tau:.2f} between {models[0]} and {models[1]}): "
                       + "; ".join(f"{m}: {', '.join(o)}" for m, o in shared.items()) + ".")
    return out


def kendall_tau(a: list[str], b: list[str]) -> float:
    """Kendall rank correlation of two orderings of the same items (1: same order, -1: reversed)."""
    pos = {s: i for i, s in enumerate(b)}
    n, score = len(a), 0
    for i in range(n):
        for j in range(i + 1, n):
            score += 1 if pos[a[i]] < pos[a[j]] else -1
    pairs = n * (n - 1) / 2
    return score / pairs if pairs else math.nan
