"""The report's tables and the cell formats they share: every markdown table of a report goes through
`markdown_table`, so tables look alike and a change of format is made once."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from bench.results import stats
from bench.results.schema import FLOOR, METRICS, Metric

UNAVAILABLE = "unavailable"  # shown for a metric that the setup could not compute (reason in the notes)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table, cells as given (no escaping). An empty header cell is written `| |`, an empty
    body cell `|  |`: the bytes of the reports rendered before this helper existed."""
    head = "|" + "|".join(f" {h} " if h else " " for h in header) + "|"
    return "\n".join([head, "|" + "---|" * len(header)] + ["| " + " | ".join(cells) + " |" for cells in rows])


def metrics_info(spec: dict) -> dict:
    return spec.get("metrics") or {}


def present(df: pd.DataFrame, spec: dict | None = None, *, per_sampler_only: bool = False) -> list[Metric]:
    """Metrics with values, headed by their feature space (spec.json) and direction; IS stays as a
    column marked unavailable when the Inception weights had no logits, so it is never missed."""
    info = metrics_info(spec or {})
    labels, unavailable = info.get("labels", {}), info.get("unavailable", {})
    out = []
    for m in METRICS:
        if per_sampler_only and not m.per_sampler:
            continue
        shown = m.column in df and df[m.column].notna().any()
        if shown or (m.column == "is" and "is" in unavailable):
            header = f"{labels.get(m.column, m.header)} {'↑' if m.higher_is_better else '↓'}"
            out.append(dataclasses.replace(m, header=header))
    return out


def sampler_columns(df: pd.DataFrame, spec: dict) -> list[str]:
    """The per-sampler metric columns the report shows (the ones readings compare)."""
    return [m.column for m in present(df, spec, per_sampler_only=True)]


def family(row: pd.Series) -> str:
    """A line in the figures: the sampler (or variant), with `@model` when the label names a model."""
    variant = row.get("variant")
    base = variant if isinstance(variant, str) and variant else row["sampler"]
    model = row.get("model")
    guidance = row.get("guidance")
    if isinstance(guidance, (str, float, int)) and not pd.isna(guidance) and str(guidance) != "":
        base += " uncond" if guidance == "uncond" else f" w={float(guidance):g}"  # one line per guidance value
    return f"{base}@{model}" if isinstance(model, str) and str(row["label"]).endswith(f"@{model}") else base


def fmt(value, form: str, missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return form.format(value)


def _cell(row: pd.Series, m: Metric, spec: dict) -> str:
    missing = UNAVAILABLE if m.column in metrics_info(spec).get("unavailable", {}) else "–"
    if f"{m.column}_lo" in row and pd.notna(row.get(m.column)):  # a mean over seeds: mean ± 95% interval
        return stats.mean_pm(row, m.column)
    return fmt(row.get(m.column), m.fmt, missing)


def _speed(row: pd.Series) -> str:
    """ms per 100 samples: the mean ± interval over seeds, or one run's median (IQR); older results
    folders hold a mean ± std."""
    decoder = row.get("decode_ms_per_100")
    part = f", of which decoder {decoder:.1f}" if decoder is not None and pd.notna(decoder) else ""
    return _speed_total(row) + part


def _speed_total(row: pd.Series) -> str:
    ms = row.get("sample_ms_per_100")
    if "sample_ms_per_100_lo" in row and pd.notna(row.get("sample_ms_per_100_lo")):
        return stats.mean_pm(row, "sample_ms_per_100")
    for col, text in (("sample_ms_per_100_iqr", "{:.1f} (IQR {:.1f})"), ("sample_ms_per_100_std", "{:.1f} ± {:.1f}")):
        if col in row and pd.notna(row.get(col)):
            return text.format(ms, row[col])
    return fmt(ms, "{:.1f}")


def _efficiency(row: pd.Series) -> str:
    """A flagged timing is a measurement error, never a number (bench/measure/timing.py). One run's flagged
    row keeps its efficiency in results.csv, but the report does not show it; a cell over seeds shows
    the mean of its unflagged seeds and says how many were flagged ("1 of 3 seeds")."""
    flag = row.get("timing_flag")
    if not stats.is_flag(flag):
        return fmt(row.get("sampler_efficiency"), "{:.2f}")
    some = stats.flagged_seeds(flag)
    if not some or pd.isna(row.get("sampler_efficiency")):
        return stats.FLAG
    return f"{row['sampler_efficiency']:.2f} ({some}: {stats.FLAG})"


def trilemma_table(df: pd.DataFrame, spec: dict | None = None) -> str:
    """The main table: quality and coverage metrics, NFE, and speed (also relative to the slowest row)."""
    spec = spec or {}
    metrics = present(df, spec)
    models = df[df["sampler"] != FLOOR]
    timed = models[models["sample_ms_per_100"].notna()]
    slowest = timed["sample_ms_per_100"].max() if len(timed) else math.nan
    slow_label = timed.loc[timed["sample_ms_per_100"].idxmax(), "label"] if len(timed) else "the slowest"
    # speed-ups also in machine-speed units (each sampler's time / a reference workload timed in its own
    # rounds, bench/measure/timing.py): robust to the machine's speed drifting between samplers
    ref = "sample_ref_per_100" in timed and len(timed) > 0 and bool(timed["sample_ref_per_100"].notna().all())
    slowest_ref = timed.loc[timed["sample_ms_per_100"].idxmax(), "sample_ref_per_100"] if ref else math.nan
    head = ["sampler", "NFE"] + [f"{m.group}: {m.header}" for m in metrics] + [
        "speed: ms / 100 samples", f"speed-up vs {slow_label}"] + (
        ["speed-up, machine-speed normalised"] if ref else []) + ["sampler efficiency"]
    rows = []
    for _, r in df.iterrows():
        floor = r["sampler"] == FLOOR
        ms = r.get("sample_ms_per_100")
        cells = [f"**{r['label']}**" if floor else r["label"], "–" if floor else fmt(r.get("nfe_measured"), "{:.0f}")]
        cells += [_cell(r, m, spec) for m in metrics]
        cells += ["–" if floor else _speed(r), "–" if floor or pd.isna(ms) else f"{slowest / ms:.1f}×"]
        if ref:
            cells.append("–" if floor else f"{slowest_ref / r['sample_ref_per_100']:.1f}×")
        cells.append("–" if floor else _efficiency(r))
        rows.append(cells)
    return markdown_table(head, rows)
