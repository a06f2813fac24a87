"""The guidance part of a report: metrics against the guidance strength w, and the reading of the
trade-off (Ho & Salimans 2022: as w grows, IS and conditional accuracy rise while diversity, recall,
falls). Rendered from results rows only; rows without a numeric w (unconditional models, the null
class) are left out of the lines and stay in the table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.plots import plt
from bench.report.readings.registry import Figure, Results, as_bullets, register
from bench.results.schema import FLOOR, METRIC

QUALITY = ("fid", "swd", "fd_classifier")  # the first one present is drawn against w
SCORES = ("is_classifier", "is", "cond_accuracy")
COVERAGE = ("recall", "classes_covered", "modes", "hq_fraction", "precision")
EXPECTED = {"cond_accuracy": "rises", "is_classifier": "rises", "is": "rises", "recall": "falls"}


def guided_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of a conditional model at a numeric w, with columns `w` and `line` (the row without its w)."""
    if "guidance_scale" not in df:
        return df.iloc[0:0]
    rows = df[(df["sampler"] != FLOOR) & pd.to_numeric(df["guidance_scale"], errors="coerce").notna()].copy()
    rows["w"] = pd.to_numeric(rows["guidance_scale"]) - 1.0
    rows["line"] = [str(label).rsplit("-w", 1)[0] for label in rows["label"]]
    return rows


def _present(rows: pd.DataFrame, columns: tuple[str, ...]) -> list[str]:
    return [c for c in columns if c in rows and rows[c].notna().any()]


def plot_vs_guidance(df: pd.DataFrame, path: Path) -> bool:
    """Quality, scores (IS, conditional accuracy) and coverage against w, one line per sampler row."""
    rows = guided_rows(df)
    if rows.empty or rows["w"].nunique() < 2:
        return False
    panels = (_present(rows, QUALITY)[:1] + _present(rows, ("hq_fraction", "precision"))[:1] + _present(rows, SCORES)
              + _present(rows, ("recall", "classes_covered", "modes"))[:1])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.0), squeeze=False)
    floor = df[df["sampler"] == FLOOR]
    for ax, col in zip(axes[0], panels):
        for line, g in rows.groupby("line", sort=True):
            g = g.sort_values("w")
            ax.plot(g["w"], pd.to_numeric(g[col]), marker="o", label=line)
        if len(floor) and col in floor and pd.notna(floor[col].iloc[0]):
            ax.axhline(float(floor[col].iloc[0]), color="k", ls="--", lw=1, label="data (floor)")
        m = METRIC.get(col)
        ax.set_title(f"{m.header if m else col} {'↑' if m and m.higher_is_better else '↓'}", fontsize=8)
        if m and m.log_scale and (pd.to_numeric(rows[col]).dropna() > 0).all():
            ax.set_yscale("log")
        ax.set_xlabel("w (guidance_scale = 1 + w)", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return True


def _trend(first: float, last: float) -> str:
    if abs(last - first) <= 1e-9 * max(1.0, abs(first)):
        return "stays"
    return "rises" if last > first else "falls"


def guidance_reading(df: pd.DataFrame) -> list[str]:
    """Per line: how each score moves from the smallest to the largest w, and whether that is the
    guidance paper's pattern (accuracy and IS up, recall down), as measured."""
    rows = guided_rows(df)
    if rows.empty or rows["w"].nunique() < 2:
        return []
    out = []
    for line, g in rows.groupby("line", sort=True):
        g = g.sort_values("w")
        if g["w"].nunique() < 2:  # a model sampled at one w only (a conditional DDGAN: w = 0): no trend to read
            continue
        lo, hi = g.iloc[0], g.iloc[-1]
        parts, agree, differ = [], [], []
        for col in _present(g, SCORES + COVERAGE + QUALITY):
            a, b = float(lo[col]), float(hi[col])
            if pd.isna(a) or pd.isna(b):
                continue
            fmt = METRIC[col].fmt if col in METRIC else "{:.3f}"
            trend = _trend(a, b)
            parts.append(f"{METRIC[col].header if col in METRIC else col} {fmt.format(a)} → {fmt.format(b)}")
            if col in EXPECTED and trend != "stays":  # unchanged (e.g. accuracy already 1.000): neither
                (agree if trend == EXPECTED[col] else differ).append(f"{METRIC[col].header} {trend}")
        verdict = ""
        if differ:
            verdict = f"; this differs from the guidance paper's pattern: {', '.join(differ)}"
        elif agree:
            verdict = f"; as in the guidance paper: {', '.join(agree)}"
        out.append(f"**{line}**, w {lo['w']:g} → {hi['w']:g}: {'; '.join(parts)}{verdict}{_best(g)}.")
    return out


def _best(g: pd.DataFrame) -> str:
    """Where along w the first quality metric present is best (the w a user would pick for quality)."""
    cols = _present(g, QUALITY)
    if not cols or g[cols[0]].isna().all():
        return ""
    m = METRIC[cols[0]]
    values = pd.to_numeric(g[cols[0]])
    best = g.loc[values.idxmax() if m.higher_is_better else values.idxmin()]
    return f"; best {m.header} at w = {best['w']:g} ({m.fmt.format(best[cols[0]])})"


def _figure(results: Results, spec: dict, path: Path) -> bool:
    return plot_vs_guidance(results.rows, path)


@register("guidance", order=10, figures=(Figure("guidance.png", _figure, 20),))
def guidance(results: Results, spec: dict) -> str | None:
    return as_bullets(guidance_reading(results.rows))
