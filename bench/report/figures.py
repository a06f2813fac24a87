"""The report's own figures: every per-sampler metric against NFE and against time, and the samples.
Figures that belong to one reading are registered with it (bench/report/readings/); `FIGURES` are
listed among them by `order` (readings' figures: registry.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench.plots import plt, scatter, show_grid
from bench.report.readings.registry import Figure, Results
from bench.report.tables import family, present
from bench.results.schema import FLOOR
from bench.files import safe_name

MAX_SAMPLE_PANELS = 40


def _untrained(g: pd.DataFrame) -> bool:
    """Rows of a model with no checkpoint (the exact-score oracle)."""
    return "checkpoint_step" in g and "model" in g and g["model"].notna().all() and g["checkpoint_step"].isna().all()


def _plot_vs(df: pd.DataFrame, x: str, xlabel: str, path: Path, spec: dict) -> bool:
    """Each per-sampler metric with values against `x`; False (no figure) when there is none to plot."""
    metrics = [m for m in present(df, spec, per_sampler_only=True) if df[m.column].notna().any()]
    models = df[(df["sampler"] != FLOOR) & (pd.to_numeric(df[x], errors="coerce") > 0)]
    if not metrics or models.empty:  # nothing to plot, or no positive x for a log axis
        return False
    floor = df[df["sampler"] == FLOOR]
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_axis_off()
    families = models.apply(family, axis=1)
    colours = {name: plt.cm.tab20(i % 20) for i, name in enumerate(dict.fromkeys(sorted(models["sampler"])))}
    for ax, m in zip(axes.flat, metrics):
        for fam, g in models.groupby(families, sort=True):
            g = g.sort_values(x)
            exact = _untrained(g)  # dashed, hollow: the exact score (no network error)
            style = dict(marker="o", ls="--" if exact else "-", mfc="none" if exact else None,
                         color=colours[g["sampler"].iloc[0]], label=fam + (" (exact score)" if exact else ""))
            if f"{m.column}_lo" in g and g[f"{m.column}_lo"].notna().any():  # spread over seeds: 95% intervals
                err = np.vstack([g[m.column] - g[f"{m.column}_lo"], g[f"{m.column}_hi"] - g[m.column]])
                ax.errorbar(g[x], g[m.column], yerr=np.nan_to_num(err), capsize=2, **style)
            else:
                ax.plot(g[x], g[m.column], **style)
        if len(floor) and not np.isnan(floor[m.column].iloc[0]):
            ax.axhline(floor[m.column].iloc[0], color="k", ls="--", lw=1, label="data (floor)")
        ax.set_xscale("log")
        if m.log_scale and (models[m.column].dropna() > 0).all():
            ax.set_yscale("log")
        xs = models[x][models[x] > 0]
        if len(xs):  # explicit limits: a metric with no finite model value (e.g. mode KL) leaves no data
            ax.set_xlim(xs.min() / 1.5, xs.max() * 1.5)
        ax.set_xlabel(xlabel)
        ax.set_title(m.header, fontsize=8)
    if len(set(families)) > 8:  # many lines: one legend beside the figure
        fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def _models(results: Results) -> bool:
    return bool((results.rows["sampler"] != FLOOR).any())


def quality_vs_nfe(results: Results, spec: dict, path: Path) -> bool:
    return _models(results) and _plot_vs(results.rows, "nfe_measured", "network function evaluations (measured)",
                                         path, spec)


def quality_vs_time(results: Results, spec: dict, path: Path) -> bool:
    return _models(results) and _plot_vs(results.rows, "sample_ms_per_100", "ms per 100 samples", path, spec)


def sample_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows whose samples are drawn, and a caption. Large grids show one NFE budget (the one
    nearest 10) next to the floor and every row not chosen by budget."""
    if len(df) <= MAX_SAMPLE_PANELS or "nfe_target" not in df or df["nfe_target"].isna().all():
        return df, ""
    found = sorted(df["nfe_target"].dropna().unique())
    b = min(found, key=lambda v: abs(math.log(v / 10)))
    keep = df[df["nfe_target"].isna() | (df["nfe_target"] == b)]
    return keep, f"Samples at NFE budget {b:.0f}, with the rows not chosen by budget."


def samples(results: Results, spec: dict, path: Path) -> bool:
    """A panel per shown row: a scatter (2-D data) or an image grid, from samples/LABEL.npz."""
    shown, _ = sample_rows(results.rows)
    found = [(r["label"], results.folder / "samples" / f"{safe_name(r['label'])}.npz") for _, r in shown.iterrows()]
    found = [(label, p) for label, p in found if p.exists()]
    if not found:
        return False
    with np.load(found[0][1]) as first:
        images = first["samples"].ndim == 4
    ncol = min(6 if not images else 4, len(found))
    nrow = math.ceil(len(found) / ncol)
    size = 2.4 if not images else 3.0
    fig, axes = plt.subplots(nrow, ncol, figsize=(size * ncol, (size + 0.1) * nrow), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, (label, p) in zip(axes.flat, found):
        x = np.load(p)["samples"]
        ax.set_axis_on()
        if x.ndim == 2:
            scatter(ax, x, label)
        else:
            show_grid(ax, x[:64], label, ncol=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


SAMPLES = "samples.png"
FIGURES = (Figure("quality_vs_nfe.png", quality_vs_nfe, 40), Figure("quality_vs_time.png", quality_vs_time, 41),
           Figure(SAMPLES, samples, 50))
