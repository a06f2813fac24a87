"""report.md and its figures, rendered from a results folder only (results.csv, spec.json,
samples/*.npz). `bench report DIR` re-renders without sampling anything.

The page: a header, the main table (bench/report/tables.py), the readings' sections, the metric
definitions, the readings' bullet lines under ## Reading, the figures (bench/report/figures.py and the
readings'), the notes. Readings register themselves at import (bench/report/readings/registry.py):
a new reading is one file in bench/report/readings/ and one import line in the block below."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

# readings register at import: one line per reading module, in any order (registration sets the order)
import bench.report.readings.budgets  # noqa: F401
import bench.report.readings.fewstep  # noqa: F401
import bench.report.readings.guidance  # noqa: F401
import bench.report.readings.latent  # noqa: F401
import bench.report.readings.orders  # noqa: F401
import bench.report.readings.overview  # noqa: F401
import bench.report.readings.schedules  # noqa: F401
import bench.report.readings.significance  # noqa: F401
import bench.report.readings.spread  # noqa: F401
import bench.report.readings.straightening  # noqa: F401
from bench.config.datasets import get_dataset_info
from bench.files import atomic_write_text, check_writable
from bench.report import figures as report_figures
from bench.report.readings import registry
from bench.report.readings.registry import Results
from bench.report.tables import _efficiency  # noqa: F401  (tests/test_timing.py imports it from here)
from bench.report.tables import metrics_info, trilemma_table
from bench.results import folder as results_folder
from bench.results import stats
from bench.results.schema import FLOOR


def load(results_dir: Path) -> tuple[pd.DataFrame, dict]:
    """results.csv and spec.json, validated (bench/results/folder.py)."""
    return results_folder.load(results_dir)


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
        results = Results(_sorted(df), per_seed, seeded, results_dir)
        path = _render(results, spec, report_dir)
        for f in sorted(report_dir.iterdir()):
            os.replace(f, final_dir / f.name)
    finally:
        shutil.rmtree(report_dir, ignore_errors=True)
    return final_dir / path.name


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    """The report's row order: by sampler, model, variant and steps, the floor row first."""
    df = df.sort_values([c for c in ("sampler", "model", "variant", "steps") if c in df], key=lambda c: c.fillna("") if c.dtype == object else c,
                        na_position="first")
    return pd.concat([df[df["sampler"] == FLOOR], df[df["sampler"] != FLOOR]])


def _render(results: Results, spec: dict, report_dir: Path) -> Path:
    drawn = _draw_figures(results, spec, report_dir)
    md = [*_header(results, spec),
          "## Trilemma: quality | coverage | speed",
          "",
          trilemma_table(results.rows, spec),
          "",
          *_sections(results, spec),
          "## Metrics",
          "",
          *[f"- {line}" for line in metric_definitions(spec)],
          "- Definitions: `bench/metrics/`; columns: `bench/results/schema.py`.",
          "",
          "## Reading",
          "",
          *filter(None, (r.read(results, spec) for r in registry.bullets())),
          "",
          *_figure_lines(results, drawn)]
    notes = [f"- {n}" for n in spec.get("notes", [])] + _notes(results.per_seed)
    if notes:
        md += ["## Notes", "", *notes, ""]
    path = report_dir / "report.md"
    atomic_write_text(path, "\n".join(md) + "\n")
    return path


def _draw_figures(results: Results, spec: dict, report_dir: Path) -> list[str]:
    """Every figure, the report's own and the readings', drawn in report order; the files written."""
    found = sorted([*report_figures.FIGURES, *registry.figures()], key=lambda f: f.order)
    return [f.file for f in found if f.draw(results, spec, report_dir / f.file)]


def _figure_lines(results: Results, drawn: list[str]) -> list[str]:
    _, caption = report_figures.sample_rows(results.rows)
    return ["## Figures", "",
            *[f"![{f[:-4]}]({f})\n" for f in drawn],
            *([caption, ""] if caption and report_figures.SAMPLES in drawn else [])]


def _sections(results: Results, spec: dict) -> list[str]:
    """The readings' own sections, each under its heading and followed by a blank line."""
    out = []
    for r in registry.sections():
        text = r.read(results, spec)
        if text:  # None (or nothing): the reading does not apply to these results
            out += [f"## {r.title}", "", text, ""]
    return out


def _header(results: Results, spec: dict) -> list[str]:
    """The title and how the numbers were made: suite, seeds, device, versions, timing protocol."""
    grid = spec.get("grid", {})
    return [
        f"# {spec['name']}: {spec['dataset']}",
        "",
        f"- suite `{spec['suite']}`, training preset `{spec.get('preset', 'not recorded')}`, {grid.get('num_samples')} samples per"
        f" sampler; {spec.get('seeding', '')}",
        *([f"- every number is the mean ± 95% Student-t interval over {_seed_count(results.rows)} training seeds"
           " (per-seed rows: results.csv; the aggregate: summary.csv, `bench/results/stats.py`)"] if results.seeded else []),
        f"- device: {spec.get('device')}, torch threads: {spec.get('torch_threads')}, CPU affinity:"
        f" {spec.get('cpu_affinity', 'not recorded')}, code: {spec.get('git_sha')}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in spec.get("versions", {}).items()),
        f"- networks while sampling: {grid.get('precision', 'fp32')}"
        f"{', torch.compile' if grid.get('compile') else ''} (columns network_precision, network_compile)",
        _protocol(grid.get("timing", {}), interleaved=bool(results.per_seed["sample_ms_per_100_iqr"].notna().any())),
        f"- rerun: `{spec.get('command') or 'bench compare --suite ' + spec['suite']}` (training is cached in the runs"
        " folder);"
        f" re-render: `bench report {results.folder}`",
        "",
    ]


def metric_definitions(spec: dict) -> list[str]:
    """How the metrics were computed: feature spaces, weights, reference sets, classifier."""
    info = metrics_info(spec)
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
                " (`bench/measure/timing.py`). NFE is counted by forward hooks on the networks.")
    return (head + " runs" + cap + ", device-synchronised; mean ± std (the protocol before interleaved"
            " rounds). NFE is counted by forward hooks on the network.")


def _digit_triples(dataset) -> bool:
    """Whether the dataset's modes are classifier digit triples (StackedMNIST); False for unknown names."""

    try:
        return isinstance(dataset, str) and get_dataset_info(dataset).digit_triples
    except Exception:  # a results folder from elsewhere may name a dataset this version lacks
        return False
