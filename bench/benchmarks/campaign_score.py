"""The CPU half of the GPU campaign: score the samples a campaign brought back, and write its results folder
and report (docs/GPU.md).

    python -m bench.benchmarks.campaign_score RETURNED --data-dir DATA [--fid-weights FILE --offline]
    python -m bench.benchmarks.campaign_score RETURNED --no-evaluate      # unpack only; then bench evaluate

RETURNED is the folder the campaign wrote (its spec.json, timing.csv, train.csv and samples-N.npz). Each
quality row's array is unpacked into OUT/samples/<row>.npz with its <row>.json (what `bench sample`
writes, so `bench evaluate` fills the identity columns), then scored with `bench evaluate`'s own function
against MNIST. OUT (default results/gpu-campaign) gets results.csv (one row per sample file, compare's
columns), timing.csv, train.csv and campaign.json (the campaign's spec.json); REPORTS (default
reports/gpu-campaign) gets report.md. The metric options are a suite's [metrics] table: mnist-cpu (the
default: Inception FID on the first 500 samples of each row, classifier metrics on all of them, minutes on
2 CPU cores) or mnist (Inception on all 10,000: about 20 minutes per row on 2 cores).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import typer

from bench.api import metric_resources
from bench.measure.score_file import score_file
from bench.cli import user_errors
from bench.errors import BenchError
from bench.files import atomic_write_text
from bench.results.sample_files import write_samples
from bench.results.store import write_results


def unpack(returned: Path, out: Path) -> list[Path]:
    """Each stored row of the campaign as OUT/samples/<key>.npz (+ .json); returns the files."""
    spec_path = Path(returned) / "spec.json"
    if not spec_path.is_file():
        raise BenchError(f"{returned} has no spec.json: it is not a folder the GPU campaign wrote")
    spec = json.loads(spec_path.read_text())
    folder = Path(out) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for entry in spec.get("samples", []):
        if not entry.get("file") or not entry.get("num_stored"):
            continue
        with np.load(Path(returned) / entry["file"], allow_pickle=False) as f:
            x = f[entry["key"]]
        meta = {**{k: v for k, v in entry.items() if k not in ("file", "key", "num_stored")},
                "num_samples": int(len(x)), "num_sampled": entry["num_samples"],
                "device": spec.get("device"), "git_sha": spec.get("git_sha"),
                "source_sha256": spec.get("source_sha256"), "campaign_file": entry["file"]}
        path = folder / f"{entry['key']}.npz"
        write_samples(path, torch.from_numpy(np.ascontiguousarray(x)), meta)
        files.append(path)
    return files


def score(files: list[Path], out: Path, *, data_dir: str, suite: str, resources, device: str, log) -> pd.DataFrame:
    """`bench evaluate` of every file (its folder OUT/evaluate/<key>), gathered into OUT/results.csv."""

    rows = []
    for path in files:
        _, row = score_file(path, dataset="mnist", out=Path(out) / "evaluate" / path.stem, data_dir=data_dir,
                                  suite=suite, seed=0, device=device, resources=resources, log=log)
        rows.append(row)
        write_results(Path(out), rows)
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame) -> str:
    """A markdown table (numbers to 4 significant digits, empty cells for missing values)."""
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "/")
    rows = [[cell(v) for v in r] for r in df.itertuples(index=False)]
    return "\n".join(["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns),
                      *["| " + " | ".join(r) + " |" for r in rows]])


def report(returned: Path, results: pd.DataFrame | None) -> str:
    """report.md: speed (with the paper's 383x), training, and quality when scored."""
    spec = json.loads((Path(returned) / "spec.json").read_text())
    lines = [f"# GPU campaign: {spec.get('device')}", "",
             f"Code {spec.get('git_sha')} (sources {spec.get('source_sha256')}), torch"
             f" {spec.get('versions', {}).get('torch')}, diffusers {spec.get('versions', {}).get('diffusers')};"
             f" {spec.get('elapsed_s')} s{'' if spec.get('complete') else ', cut short'}."
             f" Registered: {', '.join(f'{k} {v}' for k, v in spec.get('registered', {}).items())}.", ""]
    timing = Path(returned) / "timing.csv"
    if timing.is_file():
        df = pd.read_csv(timing)
        lines += ["## Speed (batch 100, random weights; s per 100 images)", "",
                  "DDGAN T = 4 over DDPM-1000 in the same configuration, beside the paper's 383x (0.21 s against"
                  " 80.5 s per 100 images on a V100).", ""]
        cols = [c for c in ("label", "network_precision", "mode", "nfe_declared", "sample_s_per_100",
                            "sampler_efficiency", "speedup_vs_ddpm", "paper_v100_s_per_100",
                            "paper_speedup_vs_ddpm1000", "notes") if c in df]
        lines += [markdown(df[cols]), ""]
    train = Path(returned) / "train.csv"
    if train.is_file():
        df = pd.read_csv(train)
        cols = [c for c in df.columns if c != "config"]
        lines += ["## Training (MNIST, wall-clock budget per model)", "", markdown(df[cols]), ""]
    if results is not None and len(results):
        cols = [c for c in ("label", "model", "nfe_measured", "num_samples", "fid", "kid", "precision", "recall",
                            "fd_classifier", "is_classifier") if c in results]
        sample_s = {s["key"]: s.get("sample_s") for s in spec.get("samples", [])}
        df = results[cols].copy()
        df["sample_s"] = [sample_s.get(label) for label in results["label"]]
        lines += ["## Quality (MNIST; scored on a CPU with bench evaluate)", "", markdown(df), ""]
    skipped = {k: v for k, v in spec.get("parts", {}).items() if v not in ("done", "trained")}
    if skipped:
        lines += ["## Not measured", "", *[f"- {k}: {v}" for k, v in skipped.items()], ""]
    return "\n".join(lines)


def main(returned: Path = typer.Argument(..., help="The folder the GPU campaign wrote."),
         out: Path = typer.Option(Path("results/gpu-campaign"), help="Results folder."),
         reports: Path = typer.Option(Path("reports/gpu-campaign"), help="Folder for report.md."),
         data_dir: str = typer.Option("", help="Folder holding MNIST/raw (else BENCH_DATA_DIR)."),
         suite: str = typer.Option("mnist-cpu", help="Whose [metrics] options: mnist-cpu or mnist."),
         evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Score the samples (else unpack)."),
         fid_weights: str = typer.Option("", envvar="BENCH_FID_WEIGHTS", help="Inception weights file."),
         offline: bool = typer.Option(False, "--offline", help="Never download metric weights."),
         device: str = typer.Option("cpu", help="Where to score.")) -> None:
    """Unpack and score a GPU campaign's samples; write OUT and REPORTS/report.md."""

    with user_errors():
        data_dir = data_dir or os.environ.get("BENCH_DATA_DIR", "")
        files = unpack(returned, out)
        typer.echo(f"unpacked {len(files)} sample files into {out / 'samples'}", err=True)
        for name in ("timing.csv", "train.csv"):
            if (Path(returned) / name).is_file():
                shutil.copyfile(Path(returned) / name, Path(out) / name)
        shutil.copyfile(Path(returned) / "spec.json", Path(out) / "campaign.json")
        results = None
        if evaluate:
            resources = metric_resources(fid_weights=fid_weights, vgg16_weights="", cache_dir=None, offline=offline)
            results = score(files, out, data_dir=data_dir, suite=suite, resources=resources, device=device,
                            log=lambda m: typer.echo(m, err=True))
        reports.mkdir(parents=True, exist_ok=True)
        atomic_write_text(reports / "report.md", report(returned, results))
        typer.echo(f"results: {out}\nreport: {reports / 'report.md'}")


if __name__ == "__main__":
    typer.run(main)
