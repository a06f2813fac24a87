"""Wall-clock of the papers' CIFAR-10 architectures at batch 100, next to the papers' V100 figures.

    python -m bench.benchmarks.gpu_timing [--device cuda] [--out results/gpu-timing]
    python -m bench.benchmarks.gpu_timing --small --device cpu --out /tmp/t   # the CPU check, tiny nets

Times DDGAN T = 4 (its CIFAR-10 generator), the DDPM UNet (35.7M parameters) with ancestral
sampling at 1000 steps, DDIM-50 and DPM-Solver++(2M)-10 on it, each in fp32 and bf16
(bench/measure/runtime.py: autocast networks, fp32 solver arithmetic), with and without torch.compile.
Weights are random: speed does not depend on them. Each configuration is timed by bench's
protocol (bench/measure/timing.py: warm-up rounds, then the median of interleaved rounds; compilation
happens in the warm-up). Rows go to OUT/results.csv (+ OUT/timing.md) with the paper's seconds
per 100 images on a V100 where it gives one (DDGAN 0.21 s, DDPM 80.5 s, DDIM-50 4.01 s; Xiao et
al. 2022, Table 1 / Song et al. 2021); a row of a configuration that fails (e.g. compile on a
platform without a compiler) says why instead of a time.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path

import pandas as pd
import torch
import typer

import methods
from bench.cli import user_errors
from bench.config.run import resolve_run_config
from bench.config.axes import check_runtime
from bench.errors import BenchError
from bench.files import atomic_write_text, check_writable
from bench.measure import runtime
from bench.measure.timing import time_sampler
from bench.config.spec import TimingSpec
from bench.results.provenance import device_name, git_sha, resolve_device, versions
from bench.runs.folders import build_sampler


@dataclasses.dataclass(frozen=True)
class Case:
    label: str
    model: str
    sampler: str
    steps: int
    paper_v100_s_per_100: float | None  # the paper's seconds per 100 CIFAR-10 images on one V100


CASES = [
    Case("ddgan-T4", "ddgan", "ddgan", 4, 0.21),
    Case("ddpm-1000", "ddpm", "ddpm", 1000, 80.5),
    Case("ddim-50", "ddpm", "ddim", 50, 4.01),
    Case("dpmpp-2m-10", "ddpm", "dpmpp-2m", 10, None),
]
SHAPE = (3, 32, 32)
# --small: the same code path with tiny networks, 8 px images and T = 20 (a CPU check, not a result)
SMALL = {"ddpm": {"model.T": 20, "model.net.channels": [8, 16], "model.net.layers_per_block": 1,
                  "model.net.attn_levels": [1], "model.net.dropout": 0.0},
         "ddgan": {"model.gen.nf": 8, "model.gen.ch_mult": [1, 2], "model.gen.num_res_blocks": 1,
                   "model.gen.attn_resolutions": [4], "model.gen.nz": 4, "model.gen.z_emb_dim": 16,
                   "model.gen.n_mlp": 1, "model.disc.ngf": 4, "model.disc.t_emb_dim": 16}}
SMALL_STEPS = {"ddpm-1000": 20, "ddim-50": 10, "dpmpp-2m-10": 5}


def build_model(case: Case, *, small: bool, device: torch.device) -> methods.Model:
    cls = methods.get_model(case.model)
    sets = {**(SMALL[case.model] if small else {}), **cls.steps_overrides(case.steps)}
    cfg = resolve_run_config(case.model, model_cls=cls.Config, preset="cifar10", dataset="cifar10",
                             sets={k: json.dumps(v) if isinstance(v, list) else v for k, v in sets.items()})
    shape = (3, 8, 8) if small else SHAPE
    torch.manual_seed(0)
    return cls(cfg.model, shape).to(device).eval()


def time_case(case: Case, *, precision: str, compile_: bool, small: bool, device: torch.device,
              spec: TimingSpec) -> dict:
    steps = SMALL_STEPS.get(case.label, 2 if case.model == "ddgan" else case.steps) if small else case.steps
    case = dataclasses.replace(case, steps=steps)
    model = build_model(case, small=small, device=device)
    label = f"ddgan-T{steps}" if case.model == "ddgan" else f"{case.sampler}-{steps}"  # --small changes steps
    row = {"label": label, "model": case.model, "sampler": case.sampler, "steps": steps,
           "network_precision": precision, "network_compile": compile_, "batch": spec.batch,
           "parameters_m": round(sum(p.numel() for p in model.denoisers()[0].parameters()) / 1e6, 2),
           "paper_v100_s_per_100": None if small else case.paper_v100_s_per_100}
    try:
        runtime.prepare(model.denoisers(), precision=precision, compile_=compile_, device=device)
        sampler = build_sampler(case.sampler, model, steps, methods.get_sampler(case.sampler).Options())
        t = time_sampler(sampler, model.denoisers(), model.data_shape, device, spec)
    except Exception as e:  # a configuration this platform cannot run is a row that says why
        return {**row, "notes": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    scale = 100 / spec.batch / 1000  # ms per batch -> s per 100 images
    return {**row, "nfe_declared": sampler.nfe, "sample_s_per_100": t.sample_ms * scale,
            "sample_s_per_100_iqr": t.sample_iqr_ms * scale, "forward_ms_per_100": t.forward_ms * 100 / spec.batch,
            "sampler_efficiency": t.efficiency, "timing_warmup": t.warmup, "timing_repeats": t.repeats,
            "notes": t.flag}


def main(out: Path = typer.Option(Path("results/gpu-timing"), help="Folder for results.csv and timing.md."),
         device: str = typer.Option("auto", help="auto, cpu or cuda."),
         small: bool = typer.Option(False, "--small", help="Tiny networks at 8 px and batch 4: a CPU check only."),
         precisions: str = typer.Option("fp32,bf16", help="Comma-separated: fp32, bf16."),
         compile_modes: str = typer.Option("off,on", "--compile-modes", help="Comma-separated: off, on."),
         cases: str = typer.Option(",".join(c.label for c in CASES), help="Comma-separated configurations."),
         warmup: int = typer.Option(2, help="Untimed rounds (compilation happens here)."),
         repeats: int = typer.Option(5, help="Timed rounds."),
         max_seconds: float = typer.Option(120.0, help="Cap on the timed rounds of one configuration.")) -> None:
    """Time the CIFAR-10 architectures; rows go to OUT/results.csv."""

    with user_errors():
        dev = resolve_device(device)
        wanted = [c.strip() for c in cases.split(",") if c.strip()]
        unknown = sorted(set(wanted) - {c.label for c in CASES})
        if unknown:
            raise BenchError(f"unknown configuration {unknown[0]!r}; choose from: {', '.join(c.label for c in CASES)}")
        precs = [p.strip() for p in precisions.split(",") if p.strip()]
        modes = [m.strip() for m in compile_modes.split(",") if m.strip()]
        for p in precs:
            check_runtime(p, False)
        if not set(modes) <= {"off", "on"} or not modes:
            raise BenchError(f"--compile-modes takes off and/or on, got {compile_modes!r}")
        check_writable(out)
        spec = TimingSpec(batch=4 if small else 100, warmup=warmup, repeats=repeats, max_seconds=max_seconds)
        rows, common = [], {"device": device_name(dev), "git_sha": git_sha(), "torch": versions().get("torch"),
                            "small": small}
        for case in [c for c in CASES if c.label in wanted]:
            for p in precs:
                for m in modes:
                    typer.echo(f"{case.label} {p} compile={m}", err=True)
                    row = time_case(case, precision=p, compile_=m == "on", small=small, device=dev, spec=spec)
                    rows.append({**row, **common, "timestamp": datetime.datetime.now(datetime.timezone.utc)
                                 .isoformat(timespec="seconds")})
                    typer.echo(f"  {row.get('sample_s_per_100', float('nan')):.4g} s / 100 images"
                               f" {row.get('notes') or ''}", err=True)
        out.mkdir(parents=True, exist_ok=True)
        df = pd.DataFrame(rows)
        atomic_write_text(out / "results.csv", df.to_csv(index=False))
        atomic_write_text(out / "timing.md", table(df))
        typer.echo(f"results: {out / 'results.csv'}")


def table(df: pd.DataFrame) -> str:
    """The rows as a markdown table, seconds per 100 images next to the paper's V100 figure."""
    lines = [f"# GPU timing: {df['device'].iloc[0]} (code {df['git_sha'].iloc[0]})", "",
             "| configuration | precision | compile | NFE | s / 100 images | paper V100 s / 100 | notes |",
             "|---|---|---|---|---|---|---|"]
    for r in df.to_dict("records"):
        t = r.get("sample_s_per_100")
        paper = r.get("paper_v100_s_per_100")
        lines.append(f"| {r['label']} | {r['network_precision']} | {'on' if r['network_compile'] else 'off'} |"
                     f" {r.get('nfe_declared', '')} | {'' if pd.isna(t) else f'{t:.3g}'} |"
                     f" {'' if paper is None or pd.isna(paper) else paper} | {r.get('notes') or ''} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    typer.run(main)
