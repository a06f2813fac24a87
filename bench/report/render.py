"""report.md and its figures, rendered from a results folder only (results.csv, spec.json,
samples/*.npz). `bench report DIR` re-renders without sampling anything."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter, ScalarFormatter

from bench.data.registry import get_dataset_info
from bench.files import atomic_write_text, check_writable
from bench.report.plots import plt, scatter, show_grid
from bench.report.readings.budgets import (
    best_table,
    budget_reading,
    budgets,
    model_name,
    primary_metric,
    sampler_of,
    with_groups,
)
from bench.report.readings.fewstep import fewstep_reading
from bench.report.readings.guidance import guidance_reading, plot_vs_guidance
from bench.report.readings.latent import latent_section
from bench.report.readings.orders import orders_section
from bench.report.readings.straightening import straightening_reading
from bench.results import folder as results_folder
from bench.results import stats
from bench.results.schema import FLOOR, METRICS, Metric, safe_name

UNAVAILABLE = "unavailable"  # shown for a metric that the setup could not compute (reason in the notes)


def _metrics_info(spec: dict) -> dict:
    return spec.get("metrics") or {}


def _present(df: pd.DataFrame, spec: dict | None = None, *, per_sampler_only: bool = False) -> list[Metric]:
    """Metrics with values, headed by their feature space (spec.json) and direction; IS stays as a
    column marked unavailable when the Inception weights had no logits, so it is never missed."""
    info = _metrics_info(spec or {})
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


def _family(row: pd.Series) -> str:
    """A line in the figures: the sampler (or variant), with `@model` when the label names a model."""
    variant = row.get("variant")
    base = variant if isinstance(variant, str) and variant else row["sampler"]
    model = row.get("model")
    guidance = row.get("guidance")
    if isinstance(guidance, (str, float, int)) and not pd.isna(guidance) and str(guidance) != "":
        base += " uncond" if guidance == "uncond" else f" w={float(guidance):g}"  # one line per guidance value
    return f"{base}@{model}" if isinstance(model, str) and str(row["label"]).endswith(f"@{model}") else base


def _untrained(g: pd.DataFrame) -> bool:
    """Rows of a model with no checkpoint (the exact-score oracle)."""
    return "checkpoint_step" in g and "model" in g and g["model"].notna().all() and g["checkpoint_step"].isna().all()


def _fmt(value, fmt: str, missing: str = "–") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return fmt.format(value)


def _cell(row: pd.Series, m: Metric, spec: dict) -> str:
    missing = UNAVAILABLE if m.column in _metrics_info(spec).get("unavailable", {}) else "–"
    if f"{m.column}_lo" in row and pd.notna(row.get(m.column)):  # a mean over seeds: mean ± 95% interval
        return stats.mean_pm(row, m.column)
    return _fmt(row.get(m.column), m.fmt, missing)


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
    return _fmt(ms, "{:.1f}")


def _efficiency(row: pd.Series) -> str:
    """A flagged timing is a measurement error, never a number (bench/timing.py). One run's flagged
    row keeps its efficiency in results.csv, but the report does not show it; a cell over seeds shows
    the mean of its unflagged seeds and says how many were flagged ("1 of 3 seeds")."""
    flag = row.get("timing_flag")
    if not stats.is_flag(flag):
        return _fmt(row.get("sampler_efficiency"), "{:.2f}")
    some = stats.flagged_seeds(flag)
    if not some or pd.isna(row.get("sampler_efficiency")):
        return stats.FLAG
    return f"{row['sampler_efficiency']:.2f} ({some}: {stats.FLAG})"


def load(results_dir: Path) -> tuple[pd.DataFrame, dict]:
    """results.csv and spec.json, validated (bench/results_folder.py)."""
    return results_folder.load(results_dir)


def trilemma_table(df: pd.DataFrame, spec: dict | None = None) -> str:
    spec = spec or {}
    metrics = _present(df, spec)
    models = df[df["sampler"] != FLOOR]
    timed = models[models["sample_ms_per_100"].notna()]
    slowest = timed["sample_ms_per_100"].max() if len(timed) else math.nan
    slow_label = timed.loc[timed["sample_ms_per_100"].idxmax(), "label"] if len(timed) else "the slowest"
    # speed-ups also in machine-speed units (each sampler's time / a reference workload timed in its own
    # rounds, bench/timing.py): robust to the machine's speed drifting between samplers
    ref = "sample_ref_per_100" in timed and len(timed) > 0 and bool(timed["sample_ref_per_100"].notna().all())
    slowest_ref = timed.loc[timed["sample_ms_per_100"].idxmax(), "sample_ref_per_100"] if ref else math.nan
    head = ["sampler", "NFE"] + [f"{m.group}: {m.header}" for m in metrics] + [
        "speed: ms / 100 samples", f"speed-up vs {slow_label}"] + (
        ["speed-up, machine-speed normalised"] if ref else []) + ["sampler efficiency"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in df.iterrows():
        floor = r["sampler"] == FLOOR
        ms = r.get("sample_ms_per_100")
        cells = [f"**{r['label']}**" if floor else r["label"], "–" if floor else _fmt(r.get("nfe_measured"), "{:.0f}")]
        cells += [_cell(r, m, spec) for m in metrics]
        cells += ["–" if floor else _speed(r), "–" if floor or pd.isna(ms) else f"{slowest / ms:.1f}×"]
        if ref:
            cells.append("–" if floor else f"{slowest_ref / r['sample_ref_per_100']:.1f}×")
        cells.append("–" if floor else _efficiency(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_vs(df: pd.DataFrame, x: str, xlabel: str, path: Path, spec: dict) -> bool:
    """Each per-sampler metric with values against `x`; False (no figure) when there is none to plot."""
    metrics = [m for m in _present(df, spec, per_sampler_only=True) if df[m.column].notna().any()]
    models = df[(df["sampler"] != FLOOR) & (pd.to_numeric(df[x], errors="coerce") > 0)]
    if not metrics or models.empty:  # nothing to plot, or no positive x for a log axis
        return False
    floor = df[df["sampler"] == FLOOR]
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.2 * nrow), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_axis_off()
    families = models.apply(_family, axis=1)
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


def _plot_by_model(df: pd.DataFrame, path: Path) -> bool:
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


MAX_SAMPLE_PANELS = 40


def sample_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows whose samples are drawn, and a caption. Large grids show one NFE budget (the one
    nearest 10) next to the floor and every row not chosen by budget."""
    if len(df) <= MAX_SAMPLE_PANELS or "nfe_target" not in df or df["nfe_target"].isna().all():
        return df, ""
    found = sorted(df["nfe_target"].dropna().unique())
    b = min(found, key=lambda v: abs(math.log(v / 10)))
    keep = df[df["nfe_target"].isna() | (df["nfe_target"] == b)]
    return keep, f"Samples at NFE budget {b:.0f}, with the rows not chosen by budget."


def _plot_samples(df: pd.DataFrame, samples_dir: Path, path: Path) -> bool:
    found = [(r["label"], samples_dir / f"{safe_name(r['label'])}.npz") for _, r in df.iterrows()]
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


def _plot_schedules(diagnostics_dir: Path, path: Path) -> list[str]:
    """Learned noise schedules gamma(t) = -logSNR(t) (saved by the runner) against the fixed linear
    schedule they started from; returns one line per schedule for the text, [] if none."""
    found = sorted(diagnostics_dir.glob("*.npz")) if diagnostics_dir.is_dir() else []
    curves = [(p.stem, np.load(p)) for p in found]
    curves = [(name, d) for name, d in curves if {"t", "gamma", "gamma_fixed_linear"} <= set(d.files)]
    if not curves:
        return []
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    lines = []
    for name, d in curves:
        ax.plot(d["t"], d["gamma"], label=f"{name}: learned")
        ax.plot(d["t"], d["gamma_fixed_linear"], ls="--", lw=1, label=f"{name}: fixed linear (initial)")
        lines.append(f"**{name}** noise schedule: gamma(0) = {d['gamma'][0]:.2f}, gamma(1) = {d['gamma'][-1]:.2f}"
                     f" (started at {d['gamma_fixed_linear'][0]:.2f}, {d['gamma_fixed_linear'][-1]:.2f});"
                     f" largest gap to the linear schedule {np.abs(d['gamma'] - d['gamma_fixed_linear']).max():.2f}.")
    ax.set_xlabel("t")
    ax.set_ylabel("gamma(t) = -log SNR(t)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return lines



def reading(df: pd.DataFrame, spec: dict | None = None) -> list[str]:
    """Plain-language observations computed from the table (no numbers typed by hand)."""
    out = []
    models = df[df["sampler"] != FLOOR].copy()
    floor = df[df["sampler"] == FLOOR]
    if models.empty:
        return out
    metrics = [m for m in _present(df, spec, per_sampler_only=True) if df[m.column].notna().any()]
    models["family"] = models.apply(_family, axis=1)
    for fam, g in models.groupby("family", sort=True):
        g = g.sort_values("steps")
        if len(g) < 2:
            continue
        lo, hi = g.iloc[0], g.iloc[-1]
        parts = [f"{m.column} {_fmt(lo[m.column], m.fmt)} → {_fmt(hi[m.column], m.fmt)}" for m in metrics]
        if parts:
            out.append(f"**{fam}** from {int(lo['steps'])} to {int(hi['steps'])} steps: {', '.join(parts)}.")
    if "bpd" in models and models["bpd"].notna().any():
        for fam, g in models[models["bpd"].notna()].groupby("family", sort=True):
            out.append(f"**{fam}** bounds the test likelihood at {g['bpd'].iloc[0]:.3f} bits/dim (lower is better;"
                       " the same checkpoint at every step count).")
    if "fid" in models and models["fid"].notna().any():
        best = models.loc[models["fid"].idxmin()]
        line = f"Best FID: **{best['label']}** ({best['fid']:.2f} at {best['nfe_measured']:.0f} network calls)"
        if len(floor) and pd.notna(floor["fid"].iloc[0]):
            line += f"; real test images score {floor['fid'].iloc[0]:.2f} (the floor at this sample count)"
        out.append(line + ".")
    if "modes" in models and models["modes"].notna().any() and len(floor):
        out.extend(_coverage_lines(models, floor))
    if models["sampler_efficiency"].notna().any():
        eff = models.loc[models["sampler_efficiency"].idxmin()]
        out.append(f"Lowest sampler efficiency: **{eff['label']}** ({eff['sampler_efficiency']:.2f}): that share of"
                   " its time is spent in the network, the rest is sampler overhead (scheduler arithmetic, noise"
                   " draws, Python).")
    flagged = models[stats.flagged(models)] if "timing_flag" in models else []
    if len(flagged):
        out.append("Timing measurement errors (sampler efficiency above 1 in two measurements; their efficiency is"
                   " not a result, and their ms per 100 samples are suspect): "
                   + ", ".join(f"{r['label']}" for _, r in flagged.iterrows()) + ".")
    adaptive = models[models["nfe_declared"].isna() & models["nfe_measured"].notna()]
    mismatch = models[models["nfe_declared"].notna() & (models["nfe_measured"] != models["nfe_declared"])]
    if "nfe_target" in models:
        short = models[models["nfe_target"].notna() & (models["nfe_measured"] != models["nfe_target"])]
        if len(short):
            out.append("NFE budgets not met exactly (the most steps within the budget; see notes): "
                       + ", ".join(f"{r['label']} ({r['nfe_measured']:.0f} of {r['nfe_target']:.0f})"
                                   for _, r in short.iterrows()) + ".")
    if len(mismatch):
        out.append("Measured NFE differs from the declared NFE for: " + ", ".join(mismatch["label"]) + ".")
    if len(adaptive):
        out.append("Adaptive solvers, whose tolerances choose their steps (NFE measured, mean over sample blocks): "
                   + ", ".join(f"{r['label']} ({r['nfe_measured']:.0f})" for _, r in adaptive.iterrows()) + ".")
    return out


def _coverage_lines(models: pd.DataFrame, floor: pd.DataFrame) -> list[str]:
    """The fastest sampler that covers as many modes as real data (toy data: with high quality too),
    and every such sampler's speed-up over the slowest one."""
    full = floor["modes"].iloc[0]
    toy = "hq_fraction" in models and models["hq_fraction"].notna().any()
    good = models[models["modes"] >= full]
    if toy:
        good = good[good["hq_fraction"] >= 0.9]
    what = f"all {full:.0f} modes" + (" with a high-quality fraction ≥ 0.9" if toy else " that real data covers")
    if "n_seeds" in models and models["n_seeds"].max() > 1:
        what += " (on the means over seeds)"
    if not len(good):
        return [f"No sampler covers {what}."]
    if good["sample_ms_per_100"].isna().any() or models["sample_ms_per_100"].isna().all():
        return [f"Samplers that cover {what}: {', '.join(good['label'])} (not all timed: no speed-up is given)."]
    best = good.loc[good["sample_ms_per_100"].idxmin()]
    slow = models.loc[models["sample_ms_per_100"].idxmax()]
    line = (f"The fastest sampler that covers {what} is **{best['label']}**: {best['sample_ms_per_100']:.1f} ms per"
            f" 100 samples at {best['nfe_measured']:.0f} network calls")
    if best["label"] != slow["label"]:
        line += (f", {slow['sample_ms_per_100'] / best['sample_ms_per_100']:.1f}× faster than the slowest"
                 f" sampler ({slow['label']})")
    out = [line + "."]
    if len(good) > 1:
        ratios = [f"{r['label']} {slow['sample_ms_per_100'] / r['sample_ms_per_100']:.1f}×"
                  for _, r in good.sort_values("sample_ms_per_100").iterrows()]
        out.append(f"Every sampler that covers {what}, with its speed-up over the slowest sampler"
                   f" ({slow['label']}; ratio of ms per 100 samples): " + ", ".join(ratios) + ".")
    return out


def metric_definitions(spec: dict) -> list[str]:
    """How the metrics were computed: feature spaces, weights, reference sets, classifier."""
    info = _metrics_info(spec)
    if not info:
        return ["Toy metrics are computed on exact 2-D data (no feature extractor)."]
    out, ref, why = [], info.get("reference", {}), info.get("unavailable", {})
    inc = info.get("inception")
    if inc:
        out.append(f"FID and KID: Inception-v3 pool3 (torch-fidelity `{inc['extractor']}`, weights"
                   f" `{Path(inc['weights']).name}`, sha256 {inc['weights_sha256'][:16]}…) on"
                   f" {info.get('inception_samples')} samples per row against {ref.get('inception_images')}"
                   f" training images, {ref.get('selection')}; samples are quantised to uint8 by rounding.")
        out.append(why["is"] + "." if "is" in why else "IS: Inception logits, 10 splits.")
    elif "inception" in why:
        out.append(why["inception"] + ".")
    if info.get("precision_recall_features"):
        out.append(f"Precision and recall: k = {info['options']['prc_k']} nearest neighbours in"
                   f" {info['precision_recall_features']} features (the standard is VGG16 fc2; numbers in other"
                   " feature spaces are not comparable with papers).")
    clf = info.get("classifier")
    if clf:
        out.append(f"FD / IS (classifier): Frechet distance in the penultimate features and Inception-style score"
                   f" of bench's own {clf['dataset']} classifier (version {clf['version']}, test accuracy"
                   f" {clf['test_accuracy']:.4f}) against {ref.get('classifier_images')} training images: fast domain"
                   " metrics, not Inception FID/IS.")
        if _digit_triples(spec.get("dataset")):
            out.append("StackedMNIST modes: each channel classified as a digit, a sample's mode is its digit"
                       " triple; modes = distinct triples among the samples (of 1000), mode KL ="
                       " KL(histogram ‖ uniform(1000)).")
    elif "classifier" in why:
        out.append(why["classifier"] + ".")
    return out


def _notes(df: pd.DataFrame) -> list[str]:
    """Row notes; a note shared by every row is listed once, and a label's notes once over its seeds."""
    per_label: dict[str, list[str]] = {}
    for _, r in df.iterrows():
        if isinstance(r.get("notes"), str) and r["notes"]:
            own = per_label.setdefault(r["label"], [])
            own += [n for n in r["notes"].split("; ") if n and n not in own]
    df = df.drop_duplicates("label")
    per_row = list(per_label.items())
    if not per_row:
        return []
    common = [n for n in per_row[0][1] if len(per_row) == len(df) and all(n in notes for _, notes in per_row)]
    out = [f"- every row: {n}" for n in common]
    for label, notes in per_row:
        own = [n for n in notes if n not in common]
        if own:
            out.append(f"- {label}: {'; '.join(own)}")
    return out


def best_section(df: pd.DataFrame) -> list[str]:
    """The best-sampler-at-each-budget table, when the grid was chosen by NFE budgets."""
    table = best_table(df)
    if table is None:
        return []
    return ["## Best sampler within each NFE budget", "",
            "Each budget admits every row that made at most that many network calls (measured). Rows on a model"
            " with no network (exact score) show each sampler's discretisation error alone; rows on a trained"
            " model add the network's error.", "", table, ""]


def render_report(results_dir: Path, report_dir: Path | None = None) -> Path:
    """Write report.md and figures; returns the report path."""
    results_dir = Path(results_dir)
    df, spec = load(results_dir)
    per_seed, seeded = df, stats.seeded(df)
    if seeded:  # the tables, figures and reading use the means over seeds, with intervals
        df = stats.summarise(df)
    final_dir = results_folder.report_dir(results_dir, spec, report_dir)
    results_folder.check_samples(results_dir, list(df["label"]))
    check_writable(final_dir)
    final_dir.mkdir(parents=True, exist_ok=True)
    # every file is drawn into a temporary folder beside the report, then moved in: a failure
    # leaves the previous report whole, never a half-written one
    report_dir = Path(tempfile.mkdtemp(prefix=".report-", dir=final_dir))
    try:
        path = _render(df, per_seed, spec, seeded, results_dir, report_dir)
        for f in sorted(report_dir.iterdir()):
            os.replace(f, final_dir / f.name)
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
    return final_dir / path.name


def _render(df: pd.DataFrame, per_seed: pd.DataFrame, spec: dict, seeded: bool, results_dir: Path,
            report_dir: Path) -> Path:
    df = df.sort_values([c for c in ("sampler", "model", "variant", "steps") if c in df], key=lambda c: c.fillna("") if c.dtype == object else c,
                        na_position="first")
    df = pd.concat([df[df["sampler"] == FLOOR], df[df["sampler"] != FLOOR]])
    models = df[df["sampler"] != FLOOR]
    figures = []
    if len(models):
        for x, xlabel, name in (("nfe_measured", "network function evaluations (measured)", "quality_vs_nfe.png"),
                                ("sample_ms_per_100", "ms per 100 samples", "quality_vs_time.png")):
            if _plot_vs(df, x, xlabel, report_dir / name, spec):
                figures.append(name)
    if _plot_by_model(df, report_dir / "solvers_vs_nfe.png"):
        figures.insert(0, "solvers_vs_nfe.png")
    if plot_vs_guidance(df, report_dir / "guidance.png"):
        figures.insert(0, "guidance.png")
    shown, caption = sample_rows(df)
    if _plot_samples(shown, results_dir / "samples", report_dir / "samples.png"):
        figures.append("samples.png")
    schedule_lines = _plot_schedules(results_dir / "diagnostics", report_dir / "noise_schedule.png")
    if schedule_lines:
        figures.append("noise_schedule.png")
    order_lines, order_figure = orders_section(results_dir, report_dir)
    if order_figure:
        figures.insert(0, order_figure)
    grid = spec.get("grid", {})
    timing = grid.get("timing", {})
    notes = [f"- {n}" for n in spec.get("notes", [])] + _notes(per_seed)
    sampler_metrics = [m.column for m in _present(df, spec, per_sampler_only=True)]  # columns the reading compares
    md = [
        f"# {spec['name']}: {spec['dataset']}",
        "",
        f"- suite `{spec['suite']}`, training preset `{spec.get('preset', 'not recorded')}`, {grid.get('num_samples')} samples per"
        f" sampler; {spec.get('seeding', '')}",
        *([f"- every number is the mean ± 95% Student-t interval over {_seed_count(df)} training seeds"
           " (per-seed rows: results.csv; the aggregate: summary.csv, `bench/stats.py`)"] if seeded else []),
        f"- device: {spec.get('device')}, torch threads: {spec.get('torch_threads')}, CPU affinity:"
        f" {spec.get('cpu_affinity', 'not recorded')}, code: {spec.get('git_sha')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in spec.get("versions", {}).items()),
        f"- networks while sampling: {grid.get('precision', 'fp32')}"
        f"{', torch.compile' if grid.get('compile') else ''} (columns network_precision, network_compile)",
        _protocol(timing, interleaved=bool(per_seed["sample_ms_per_100_iqr"].notna().any())),
        f"- rerun: `bench compare --suite {spec['suite']}` (training is cached in the runs folder);"
        f" re-render: `bench report {results_dir}`",
        "",
        "## Trilemma: quality | coverage | speed",
        "",
        trilemma_table(df, spec),
        "",
        *latent_section(df),
        *best_section(df),
        *order_lines,
        "## Metrics",
        "",
        *[f"- {line}" for line in metric_definitions(spec)],
        "- Definitions: `bench/metrics/`; columns: `bench/schema.py`.",
        "",
        "## Reading",
        "",
        *[f"- {line}" for line in guidance_reading(df) + reading(df, spec) + straightening_reading(df, spec)
          + fewstep_reading(df, sampler_metrics)
          + budget_reading(df)
          + schedule_lines + stats.significance_lines(df, sampler_metrics)],
        "",
        "## Figures",
        "",
        *[f"![{f[:-4]}]({f})\n" for f in figures],
        *([caption, ""] if caption and "samples.png" in figures else []),
    ]
    if notes:
        md += ["## Notes", "", *notes, ""]
    path = report_dir / "report.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    return path


def _seed_count(df: pd.DataFrame) -> str:
    lo, hi = int(df["n_seeds"].min()), int(df["n_seeds"].max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _protocol(timing: dict, *, interleaved: bool) -> str:
    """The wall-clock protocol the rows were measured by (older results folders: mean ± std)."""
    head = (f"- wall-clock protocol: fixed noise, batch {timing.get('batch')}, {timing.get('warmup')} warm-up then"
            f" {timing.get('repeats')} timed")
    cap = f" (capped at {timing.get('max_seconds')} s per sampler; the counts used are in results.csv)"
    if interleaved:
        return (head + " rounds" + cap + ", each timing one sampler call and then, back to back, a burst of each"
                " network's forwards (as many as the sampler makes, at most 32); medians over rounds with the IQR; sampler efficiency = median over rounds of network time /"
                " sampler time, and one above 1 (measured twice) is flagged a measurement error"
                " (`bench/timing.py`). NFE is counted by forward hooks on the networks.")
    return (head + " runs" + cap + ", device-synchronised; mean ± std (the protocol before interleaved"
            " rounds). NFE is counted by forward hooks on the network.")


def _digit_triples(dataset) -> bool:
    """Whether the dataset's modes are classifier digit triples (StackedMNIST); False for unknown names."""

    try:
        return isinstance(dataset, str) and get_dataset_info(dataset).digit_triples
    except Exception:  # a results folder from elsewhere may name a dataset this version lacks
        return False
