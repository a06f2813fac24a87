"""Samplers compared at equal cost: the best sampler within each NFE budget, per model, and where
the exact-score oracle and a trained model rank the samplers differently (a section with its table and
figure, and bullet lines under ## Reading).

A pure function of a results table. A budget B admits every row that made at most B network
calls (measured); the rows of one model are ranked by the table's primary quality metric. Rows
without a checkpoint step come from a model with no training (the exact-score oracle): their
ranking is each sampler's discretisation error alone.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from bench.plots import plt
from bench.report.readings.registry import Figure, Results, as_bullets, register
from bench.report.tables import markdown_table
from bench.results.schema import FLOOR, METRIC

# the first of these columns with values ranks the samplers (names and directions: bench/results/schema.py METRICS)
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
    table = []
    for b in found:
        cells = [f"≤ {b}"]
        for m in models:
            ranked = rank_rows(rows[(rows["group"] == m) & (rows["nfe_measured"] <= b)], col, lower)
            cells.append("–" if ranked.empty else
                         f"{ranked.iloc[0]['label']} ({name} {ranked.iloc[0][col]:.4g})")
        table.append(cells)
    return markdown_table(head, table)


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


def plot_by_model(df: pd.DataFrame, path: Path) -> bool:
    """The primary quality metric against measured NFE, one panel per model, one line per sampler
    (the same colour on every panel): a solver's discretisation error (exact-score panel) next to
    discretisation plus network error (trained panels). Only for grids with NFE budgets."""
    metric = primary_metric(df)
    models = df[(df["sampler"] != FLOOR) & df["model"].notna() & (df["nfe_measured"] > 0)] \
        if "model" in df else df.iloc[0:0]
    if metric is None or not budgets(df) or models.empty:
        return False
    col, name, _ = metric
    models = with_groups(models)
    names = list(dict.fromkeys(models["group"]))
    colours = {s: plt.cm.tab20(i % 20) for i, s in enumerate(sorted(set(models.apply(sampler_of, axis=1))))}
    floor = df[df["sampler"] == FLOOR]
    ncols = min(4, len(names))
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.8 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, model in zip(axes.flat, names):
        rows = models[models["group"] == model]
        for sampler, g in rows.groupby(rows.apply(sampler_of, axis=1), sort=True):
            g = g.sort_values("nfe_measured")
            ax.plot(g["nfe_measured"], g[col], marker="o", ms=3, color=colours[sampler], label=sampler)
        if len(floor) and pd.notna(floor[col].iloc[0]):
            ax.axhline(floor[col].iloc[0], color="k", ls="--", lw=1, label="data (floor)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        if (models[col].dropna() > 0).all():
            ax.set_yscale("log")
        ax.set_title(model_name(models, model), fontsize=9)
        ax.set_xlabel("network function evaluations (measured)")
    for row in axes:
        row[0].set_ylabel(f"{name} (lower is better)")
    handles = {}
    for ax in axes.flat[:len(names)]:  # every sampler once, whichever panel it is on
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(list(handles.values()), list(handles), fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def solvers_vs_nfe(results: Results, spec: dict, path: Path) -> bool:
    return plot_by_model(results.rows, path)


@register("best-per-budget", order=20, title="Best sampler within each NFE budget",
          figures=(Figure("solvers_vs_nfe.png", solvers_vs_nfe, 30),))
def best_section(results: Results, spec: dict) -> str | None:
    """The best-sampler-at-each-budget table, when the grid was chosen by NFE budgets."""
    table = best_table(results.rows)
    if table is None:
        return None
    return ("Each budget admits every row that made at most that many network calls (measured). Rows on a model"
            " with no network (exact score) show each sampler's discretisation error alone; rows on a trained"
            " model add the network's error.\n\n" + table)


@register("budgets", order=50)
def budgets_reading(results: Results, spec: dict) -> str | None:
    return as_bullets(budget_reading(results.rows))
