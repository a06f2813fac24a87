"""The report's latent-space section: what the autoencoder costs and whether latent rows beat pixel rows.

Every sentence is computed from results.csv (no number typed by hand). Rows pair up when they use the
same sampler at the same measured NFE, one in pixel space (empty `latent`) and one in latent space; the
verdict compares quality at equal or lower sampling time, and states training time with the
autoencoder's included, since a latent model cannot exist without it.
"""

from __future__ import annotations

import pandas as pd

from bench.report.readings.registry import Results, register
from bench.report.tables import markdown_table
from bench.results.schema import FLOOR

QUALITY = (("fid", "FID (Inception)"), ("fd_classifier", "FD (classifier features)"))  # lower is better


def _num(value, fmt: str = "{:.2f}") -> str:
    return "–" if value is None or pd.isna(value) else fmt.format(value)


def _primary(df: pd.DataFrame) -> tuple[str, str] | None:
    for col, name in QUALITY:
        if col in df and df[col].notna().any():
            return col, name
    return None


def _is_latent(df: pd.DataFrame) -> pd.Series:
    return df["latent"].notna() & (df["latent"].astype(str) != "") if "latent" in df else pd.Series(False, df.index)


def _train(row: pd.Series) -> float | None:
    own, ae = row.get("train_s"), row.get("latent_train_s")
    if own is None or pd.isna(own):
        return None
    return float(own) + (float(ae) if ae is not None and pd.notna(ae) else 0.0)


def latent_lines(df: pd.DataFrame) -> list[str]:
    """The section's markdown lines (empty when no row is in latent space)."""
    latent = _is_latent(df)
    if not latent.any():
        return []
    floors = df[df["sampler"] == FLOOR]
    rows = df[df["sampler"] != FLOOR]
    lat, pix = rows[latent[rows.index]], rows[~latent[rows.index]]
    out = []
    for name, g in df[latent].groupby("latent"):
        first = g.iloc[0]
        ae_s = first.get("latent_train_s")
        users = g.loc[g["sampler"] != FLOOR, "run_id"].nunique() if "run_id" in g else 0
        out.append(f"- autoencoder `{name}`: scaling factor s = {_num(first.get('latent_scale'), '{:.4f}')} (1 / std of"
                   f" its training latents), trained in {_num(ae_s, '{:.0f}')} s, shared by {users} latent model"
                   f"{'s' if users != 1 else ''} (each latent row's training time counts it whole). Latent samples are decoded before"
                   " every metric; their ms per 100 samples include the decoder (timed alone too); NFE counts the"
                   " denoiser only.")
    cols = [c for c, _ in QUALITY if c in df and df[c].notna().any()] + [
        c for c in ("precision", "recall") if c in df and df[c].notna().any()]
    head = ["row", "space", "NFE", *cols, "ms / 100 samples", "of which decoder", "training s (model + autoencoder)"]
    table = []
    for _, r in pd.concat([floors, pix, lat]).iterrows():
        floor = r["sampler"] == FLOOR
        space = "latent" if latent[r.name] else "pixel"
        train = _train(r)
        ae = r.get("latent_train_s")
        train_text = "–" if train is None else (f"{train:.0f} ({r['train_s']:.0f} + {ae:.0f})" if space == "latent"
                                                and pd.notna(ae) else f"{train:.0f}")
        table.append([
            f"**{r['label']}**" if floor else r["label"], space if not floor else ("real" if space == "pixel" else
                                                                                 "reconstructed"),
            "–" if floor else _num(r.get("nfe_measured"), "{:.0f}"),
            *[_num(r.get(c), "{:.3f}" if c in ("precision", "recall") else "{:.2f}") for c in cols],
            "–" if floor else _num(r.get("sample_ms_per_100"), "{:.1f}"),
            _num(r.get("decode_ms_per_100"), "{:.1f}") if not floor else "–", train_text])
    return out + ["", markdown_table(head, table), "", *[f"- {line}" for line in latent_reading(df)]]


@register("latent", order=10, title="Latent space")
def latent_section(results: Results, spec: dict) -> str | None:
    return "\n".join(latent_lines(results.rows)) or None


COMPARED = (("fid", "FID", False, "{:.2f}"), ("fd_classifier", "FD (classifier)", False, "{:.2f}"),
            ("precision", "precision", True, "{:.3f}"), ("recall", "recall", True, "{:.3f}"))


def _versus(r: pd.Series, p: pd.Series) -> list[str]:
    """'FID 275.17 vs 234.89 (worse)', ... for every metric both rows have."""
    out = []
    for col, name, higher, fmt in COMPARED:
        a, b = r.get(col), p.get(col)
        if a is None or b is None or pd.isna(a) or pd.isna(b):
            continue
        verdict = "equal" if a == b else "better" if (a > b) == higher else "worse"
        out.append(f"{name} {fmt.format(a)} vs {fmt.format(b)} ({verdict})")
    return out


def latent_reading(df: pd.DataFrame) -> list[str]:
    """Plain statements: the autoencoder's cost in quality, pairs at equal NFE, and the verdict at equal time."""
    quality = _primary(df)
    if quality is None:
        return ["No quality metric was measured: latent and pixel rows cannot be compared here."]
    col, name = quality
    latent = _is_latent(df)
    floors = df[df["sampler"] == FLOOR]
    rows = df[(df["sampler"] != FLOOR) & df[col].notna()]
    lat, pix = rows[latent[rows.index]], rows[~latent[rows.index]]
    out = []
    real = floors[~latent[floors.index]]
    for _, rec in floors[latent[floors.index]].iterrows():
        base = f" against {real[col].iloc[0]:.2f} for the real images themselves" if len(real) and pd.notna(
            real[col].iloc[0]) else ""
        out.append(f"The autoencoder `{rec['latent']}` costs quality before any model: its reconstructions of real test"
                   f" images score {name} {rec[col]:.2f}{base}, the best a latent row can reach.")
    for _, r in lat.iterrows():
        twin = pix[(pix["sampler"] == r["sampler"]) & (pix["nfe_measured"] == r["nfe_measured"])]
        if not len(twin):
            continue
        p = twin.iloc[0]
        speed = p["sample_ms_per_100"] / r["sample_ms_per_100"] if r["sample_ms_per_100"] else float("nan")
        t_l, t_p = _train(r), _train(p)
        train = f"; training {t_l:.0f} s with the autoencoder vs {t_p:.0f} s" if t_l is not None and t_p is not None else ""
        out.append(f"At {r['nfe_measured']:.0f} network calls, **{r['label']}** vs **{p['label']}** in pixel space: "
                   + ", ".join(_versus(r, p)) + f"; sampling {r['sample_ms_per_100']:.1f} vs"
                   f" {p['sample_ms_per_100']:.1f} ms per 100 samples ({speed:.1f}× the pixel row's speed){train}.")
    if len(lat) and len(pix):
        best_l = lat.loc[lat[col].idxmin()]
        budget = pix[pix["sample_ms_per_100"] <= best_l["sample_ms_per_100"]]
        if len(budget):
            best_p = budget.loc[budget[col].idxmin()]
            won = best_l[col] < best_p[col]
            out.append(f"At equal sampling time: the best latent row, **{best_l['label']}** ({name} {best_l[col]:.2f}"
                       f" at {best_l['sample_ms_per_100']:.1f} ms per 100), {'beats' if won else 'does not beat'} the"
                       f" best pixel row no slower than it, **{best_p['label']}** ({best_p[col]:.2f} at"
                       f" {best_p['sample_ms_per_100']:.1f} ms), by {abs(best_l[col] - best_p[col]):.2f}.")
        else:
            fastest = pix.loc[pix["sample_ms_per_100"].idxmin()]
            won = best_l[col] < fastest[col]
            out.append(f"At equal sampling time: no pixel row is as fast as the best latent row **{best_l['label']}**"
                       f" ({best_l['sample_ms_per_100']:.1f} ms per 100 samples, {name} {best_l[col]:.2f}), so equal time"
                       f" is not on this grid; the fastest pixel row, **{fastest['label']}**, takes"
                       f" {fastest['sample_ms_per_100']:.1f} ms ({fastest['sample_ms_per_100'] / best_l['sample_ms_per_100']:.1f}×"
                       f" as long) and scores {fastest[col]:.2f}: {'the latent row is faster and better' if won else 'the latent row is faster but worse'}"
                       f" by {abs(best_l[col] - fastest[col]):.2f}.")
        best_p_all = pix.loc[pix[col].idxmin()]
        t_l, t_p = _train(best_l), _train(best_p_all)
        if t_l is not None and t_p is not None:
            out.append(f"Training: the best latent row's model took {t_l:.0f} s with its autoencoder, the best pixel row's"
                       f" ({best_p_all['label']}, {name} {best_p_all[col]:.2f}) {t_p:.0f} s"
                       f" ({'less' if t_l < t_p else 'more'} time for the latent model).")
    return out
