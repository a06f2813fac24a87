"""The report's general reading: how each sampler's metrics move with its step count, likelihood
bounds, the best FID, mode coverage at speed, sampler efficiency, and every NFE that is not what was
asked for (budgets not met, declared vs measured, adaptive solvers). Numbers come from the table only."""

from __future__ import annotations

import pandas as pd

from bench.report.readings.registry import Results, as_bullets, register
from bench.report.tables import family, fmt, present
from bench.results import stats
from bench.results.schema import FLOOR


def overview_lines(df: pd.DataFrame, spec: dict | None = None) -> list[str]:
    """Plain-language observations computed from the table (no numbers typed by hand)."""
    out = []
    models = df[df["sampler"] != FLOOR].copy()
    floor = df[df["sampler"] == FLOOR]
    if models.empty:
        return out
    metrics = [m for m in present(df, spec, per_sampler_only=True) if df[m.column].notna().any()]
    models["family"] = models.apply(family, axis=1)
    for fam, g in models.groupby("family", sort=True):
        g = g.sort_values("steps")
        if len(g) < 2:
            continue
        lo, hi = g.iloc[0], g.iloc[-1]
        parts = [f"{m.column} {fmt(lo[m.column], m.fmt)} → {fmt(hi[m.column], m.fmt)}" for m in metrics]
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


@register("overview", order=20)
def overview(results: Results, spec: dict) -> str | None:
    return as_bullets(overview_lines(results.rows, spec))
