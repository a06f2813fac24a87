"""The report's reading of few-step generators, answering the two questions a one- or two-step model has
to answer before anyone picks it:

1. Does a 1-2 step model beat DDGAN at 2-4 steps (a GAN row of at least its NFE and at most 4)?
2. Does it beat the best solver on a trained diffusion model at equal NFE?

Each answer is given metric by metric. "Better" and "worse" are said only where the 95% intervals over
training seeds do not overlap (bench/results/stats.py compare_rows); without seeds the values are shown
and the difference is called untested.

Which rows are which comes from the model's registration (`Model.family_of(key_params)` in methods/, with
the key params of each cell in spec.json), never from names: a new few-step model joins by registering
`family = "few-step"`, and a rectified flow after reflow is few-step because its key params say so.
"""

from __future__ import annotations

import pandas as pd

import methods
from bench.report.readings.budgets import primary_metric, rank_rows
from bench.report.readings.registry import Results, as_bullets, register
from bench.report.tables import sampler_columns
from bench.results.schema import FLOOR, METRIC
from bench.results.stats import compare_rows, mean_pm

FEW_STEP_NFE = 2  # question 1's few-step rows: at most this many network calls
GAN_NFE = (2, 4)  # question 1's GAN rows: this range of NFE ("DDGAN's 2-4 steps"), and any at the row's own NFE


def _cells_key_params(spec: dict) -> dict[tuple[str, str], dict]:
    """(sampler, variant) -> a cell's key params, from spec.json (the same for every step count and seed,
    except a GAN's T, which does not change its family)."""
    out = {}
    for c in spec.get("cells", []) if isinstance(spec, dict) else []:
        if isinstance(c, dict) and "method" in c:
            out.setdefault((str(c["method"]), str(c.get("variant") or "")), c.get("key_params") or {})
    return out


def families(rows: pd.DataFrame, spec: dict) -> pd.Series:
    """Each row's family ("few-step", "gan", "solver", "exact", ...; "" for a model this version lacks).
    A row without a checkpoint step has no trained network, so it is never a trained solver row."""
    key_params = _cells_key_params(spec)
    variants = rows["variant"] if "variant" in rows else pd.Series(None, index=rows.index)

    def one(model, sampler, variant) -> str:
        try:
            cls = methods.get_model(str(model))
        except Exception:
            return ""
        v = variant if isinstance(variant, str) else ""
        return cls.family_of(key_params.get((str(sampler), v), {}))

    fam = pd.Series([one(m, s, v) for m, s, v in zip(rows["model"], rows["sampler"], variants)], index=rows.index,
                    dtype=object)
    if "checkpoint_step" in rows:
        fam = fam.where(~((fam == "solver") & rows["checkpoint_step"].isna()), "exact")
    return fam


def _verdicts(a: pd.Series, b: pd.Series, cols: list[str], seeded: bool) -> str:
    """'better on X (a vs b); worse on Y; not distinguishable on Z', a's values first."""
    groups: dict[str, list[str]] = {}
    for col in cols:
        if pd.isna(a.get(col)) or pd.isna(b.get(col)):
            continue
        text = f"{METRIC[col].header} ({mean_pm(a, col)} vs {mean_pm(b, col)})"
        if not seeded:
            word = "values"
        else:
            word = {1: "better", -1: "worse", 0: "not distinguishable"}[compare_rows(a, b, col)]
        groups.setdefault(word, []).append(text)
    parts = [f"{w} on " + ", ".join(groups[w]) for w in ("better", "worse", "not distinguishable") if w in groups]
    if "values" in groups:
        parts.append("untested: " + ", ".join(groups["values"]))
    ta, tb = a.get("sample_ms_per_100"), b.get("sample_ms_per_100")
    if pd.notna(ta) and pd.notna(tb) and ta > 0:
        ratio = tb / ta
        pace = ("about as fast" if abs(ratio - 1) < 0.05 else
                f"{ratio:.1f}× faster" if ratio > 1 else f"{1 / ratio:.1f}× slower")
        parts.append(f"{pace} ({ta:.1f} vs {tb:.1f} ms / 100 samples, one session)")
    return "; ".join(parts) if parts else "no metric in common"


def _nfe(row: pd.Series) -> float:
    n = row.get("nfe_measured")
    return float(n) if n is not None and pd.notna(n) else float("nan")


def _name(row: pd.Series) -> str:
    """The row's label, with the model it ran on when that is not the sampler's own (a solver on ddpm)."""
    model = row.get("model")
    if not isinstance(model, str) or model == row.get("sampler") or str(row["label"]).endswith(f"@{model}"):
        return f"**{row['label']}**"
    return f"**{row['label']}** on {model}"


def _headline(row: pd.Series, other: pd.Series, metric: tuple[str, str, bool] | None, seeded: bool) -> str:
    """'A (n NFE) beats / is beaten by / ties with B (m NFE) on <primary metric>' in a few words."""
    a, b = f"{_name(row)} ({_nfe(row):.0f} NFE)", f"{_name(other)} ({_nfe(other):.0f} NFE)"
    if not seeded or metric is None or pd.isna(row.get(metric[0])) or pd.isna(other.get(metric[0])):
        return f"{a} against {b}"
    verb = {1: "beats", -1: "is beaten by", 0: "ties (the intervals overlap) with"}[compare_rows(row, other, metric[0])]
    return f"{a} {verb} {b} on {metric[1]}"


def fewstep_reading(df: pd.DataFrame, cols: list[str], spec: dict | None = None, seeded: bool = False) -> list[str]:
    """The lines of both questions; [] when the table has no few-step row or nothing to put it against."""
    spec = spec or {}
    if "model" not in df or "nfe_measured" not in df:
        return []
    rows = df[(df["sampler"] != FLOOR) & df["model"].notna()]
    fam = families(rows, spec)
    few, gan, solver = (rows[fam == f] for f in ("few-step", "gan", "solver"))
    if few.empty or (gan.empty and solver.empty):
        return []
    cols = [c for c in cols if c in METRIC and c in df]
    metric = primary_metric(df)
    seeds = int(df["n_seeds"].max()) if seeded and "n_seeds" in df and df["n_seeds"].notna().any() else 1
    how = (f"95% intervals over {seeds} training seeds; better / worse only where they do not overlap" if seeded
           else "one training seed: no interval, so no difference is called better or worse")
    out = []
    few = few.sort_values(["nfe_measured", "label"])
    q1 = few[few["nfe_measured"] <= FEW_STEP_NFE]
    if not gan.empty and not q1.empty:
        out.append(f"**Does a 1-2 step model beat DDGAN at 2-4 steps?** ({how}; the first value is the few-step row's)")
        for _, r in q1.iterrows():
            n = _nfe(r)
            refs = gan[(gan["nfe_measured"] == n) | gan["nfe_measured"].between(max(GAN_NFE[0], n), GAN_NFE[1])]
            for _, g in refs.sort_values("nfe_measured").iterrows():
                out.append(f"{_headline(r, g, metric, seeded)}: {_verdicts(r, g, cols, seeded)}.")
    if not solver.empty and metric is not None:
        col, mname, lower = metric
        out.append(f"**Does it beat the best solver on a trained diffusion model at equal NFE?** (the best by {mname}"
                   f" among solver rows within the same NFE; {how})")
        for _, r in few.iterrows():
            n = _nfe(r)
            within = rank_rows(solver[solver["nfe_measured"] <= n], col, lower)
            if within.empty:
                out.append(f"{_name(r)} ({n:.0f} NFE): no solver row on a trained diffusion model within {n:.0f} NFE.")
                continue
            best = within.iloc[0]
            out.append(f"{_headline(r, best, metric, seeded)}: {_verdicts(r, best, cols, seeded)}.")
    return out


@register("fewstep", order=40, title="Few-step generators")
def fewstep(results: Results, spec: dict) -> str | None:
    return as_bullets(fewstep_reading(results.rows, sampler_columns(results.rows, spec), spec, results.seeded))
