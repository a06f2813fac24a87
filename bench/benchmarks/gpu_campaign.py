"""The GPU campaign: speed of the papers' CIFAR-10 architectures and quality at GPU scale on MNIST, in one
command of at most 8 minutes on one H100, written as a few files that can come back from a device machine.

    python -m bench.benchmarks.gpu_campaign OUT [--data-dir data] [--device cuda]
    python -m bench.benchmarks.gpu_campaign OUT --small --device cpu        # the CPU rehearsal (< 3 minutes)

(a) Speed (bench/benchmarks/campaign_speed.py): DDGAN T = 4 against DDPM-1000, DDIM-50, DPM-Solver++(2M)-10
    (and EDM-Heun-35 once `edm` and `edm-heun` are registered) at batch 100, random weights; fp32 and bf16;
    eager, with torch.compile, and with the sampling loop captured as one CUDA graph where the sampler allows
    it. Every row has its sampler efficiency and its speed-up over DDPM-1000 in the same configuration;
    DDGAN's sits beside the paper's 383x (0.21 s against 80.5 s per 100 images on a V100).
(b) Quality (bench/benchmarks/campaign_quality.py): ddpm, flow, ddgan T = 4 (and edm once registered)
    trained on MNIST for a wall-clock budget each with the networks of preset `mnist-gpu`, then 10,000
    samples per row: the solver table at NFE 5, 10 and 20, DDGAN T = 4 and DDPM-1000, as uint8 arrays.
    FID is computed afterwards on a CPU machine (python -m bench.benchmarks.campaign_score, docs/GPU.md).

The order is the order of certainty: eager speed rows (a bounded share of the budget), then the quality
part, then CUDA-graph rows, then torch.compile rows (whose compilation time is the least predictable).
Every step checks the time left against an estimate from what it already measured and skips, with the
reason, what would not fit; DDPM-1000 samples as many whole blocks as the time left allows. Files in OUT
(bench/benchmarks/campaign_files.py) are rewritten atomically after every row, so a run cut short keeps
what it measured. Training runs and caches go to --work-dir, never to OUT. Nothing here needs a network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time
from pathlib import Path

import torch
import typer

import methods
from bench.benchmarks import campaign_quality as quality
from bench.benchmarks import campaign_speed as speed
from bench.benchmarks.campaign_files import Outbox, check_folder
from bench.cli import user_errors
from bench.config.run import read_run_config
from bench.config.axes import check_runtime
from bench.errors import BenchError
from bench.config.spec import TimingSpec
from bench.results.provenance import device_name, git_sha, resolve_device, versions

ROOT = Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that sets what the campaign measures (recorded in spec.json)."""
    small: bool = False
    device: str = "auto"
    data_dir: str = str(ROOT / "data")
    work_dir: str = "/tmp/bench-gpu-campaign"
    deadline_s: float = 450.0  # the whole campaign; it ends itself before this
    speed_s: float = 110.0  # share of the eager speed rows
    compile_reserve_s: float = 60.0  # a torch.compile configuration starts only with this much time left
    graph_reserve_s: float = 30.0  # kept from DDPM-1000's samples for the CUDA-graph rows that follow
    parts: tuple[str, ...] = ("speed", "quality")
    precisions: tuple[str, ...] = ("fp32", "bf16")
    modes: tuple[str, ...] = ("eager", "graph", "compile")
    timing_batch: int = 100
    timing_warmup: int = 2
    timing_repeats: int = 5
    timing_max_s: float = 15.0
    models: tuple[str, ...] = quality.MODELS
    preset: str = "mnist-gpu"
    train_s: float = 60.0
    calibration_steps: int = 40
    min_steps: int = 200
    max_steps: int = 100_000
    nfe: tuple[int, ...] = (5, 10, 20)
    num_samples: int = 10_000
    sample_batch: int = 1000
    sample_precision: str = "fp32"
    seed: int = 0
    model_sets: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()  # per-model overrides (--small)


# --small: the same code path with tiny networks, short trainings and few samples (a CPU rehearsal, no result)
TINY_NET = {"model.net.channels": [8, 16, 16], "model.net.layers_per_block": 1, "model.net.attn_levels": [],
            "model.net.dropout": 0.0}
SMALL_SETS = {"ddpm": {**TINY_NET, "model.T": 50, "train.batch_size": 32},
              "flow": {**TINY_NET, "train.batch_size": 32}, "edm": {**TINY_NET, "train.batch_size": 32},
              "ddgan": {"model.gen.nf": 8, "model.gen.ch_mult": [1, 2], "model.gen.num_res_blocks": 1,
                        "model.gen.attn_resolutions": [], "model.gen.nz": 8, "model.gen.z_emb_dim": 16,
                        "model.gen.n_mlp": 1, "model.disc.ngf": 4, "model.disc.t_emb_dim": 16,
                        "train.batch_size": 32}}
SMALL = dict(deadline_s=170.0, speed_s=45.0, compile_reserve_s=0.0, graph_reserve_s=0.0, modes=("eager", "graph"),
             timing_batch=4, timing_warmup=1, timing_repeats=3, timing_max_s=3.0, train_s=4.0, calibration_steps=6, min_steps=10,
             max_steps=400, nfe=(5, 10, 20), num_samples=200, sample_batch=100,
             model_sets=tuple((m, tuple(s.items())) for m, s in SMALL_SETS.items()))


class Clock:
    """Seconds left before `deadline_s` from now; a share of it with `within(seconds)`."""

    def __init__(self, deadline_s: float, start: float | None = None):
        self.start = time.perf_counter() if start is None else start
        self.deadline_s = deadline_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def remaining(self) -> float:
        return self.deadline_s - self.elapsed()

    def within(self, seconds: float) -> "Clock":
        return Clock(min(self.deadline_s, self.elapsed() + seconds), start=self.start)


def source_fingerprint() -> str:
    """sha256 (12 hex) of bench/ and methods/ Python sources: names the code where git is not there."""
    h = hashlib.sha256()
    for p in sorted([*(ROOT / "bench").rglob("*.py"), *(ROOT / "methods").rglob("*.py")]):
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:12]


def registered() -> dict[str, str]:
    out = {m: ("registered" if m in methods.list_models() else "not registered") for m in quality.MODELS}
    out["edm-heun"] = "registered" if "edm-heun" in methods.list_samplers() else "not registered"
    return out


class Campaign:
    def __init__(self, settings: Settings, out: Path, echo=None):
        self.s = settings
        self.dev = resolve_device(settings.device)
        self.box = Outbox(out, echo=echo)
        self.clock = Clock(settings.deadline_s)
        self.timing: list[dict] = []
        self.trains: list[dict] = []
        self.samples: list[dict] = []
        self.status: dict[str, str] = {}
        self.work = Path(settings.work_dir)

    # --- files ----------------------------------------------------------------------------------------
    def write_spec(self, complete: bool = False) -> None:
        cuda = self.dev.type == "cuda"
        self.box.write_json("spec.json", {
            "name": "gpu-campaign", "complete": complete, "elapsed_s": round(self.clock.elapsed(), 1),
            "device": device_name(self.dev), "git_sha": git_sha(), "source_sha256": source_fingerprint(),
            "versions": versions(), "registered": registered(), "parts": self.status,
            "cuda": {"tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                     "capability": list(torch.cuda.get_device_capability(self.dev)) if cuda else None},
            "torch_threads": torch.get_num_threads(), "settings": dataclasses.asdict(self.s),
            "paper": {"ddgan_T4_v100_s_per_100": 0.21, "ddpm_1000_v100_s_per_100": 80.5,
                      "speedup": round(speed.PAPER_SPEEDUP)},
            "speedups": [{k: r.get(k) for k in ("label", "network_precision", "mode", "sample_s_per_100",
                                                 "speedup_vs_ddpm", "paper_speedup_vs_ddpm1000")}
                         for r in speed.speedups(self.timing) if r["model"] == "ddgan"],
            "samples": [{k: v for k, v in r.items() if k != "samples"} for r in self.samples]})

    def add_timing(self, row: dict) -> None:
        self.timing.append(row)
        self.box.write_csv("timing.csv", speed.speedups(self.timing))

    # --- the parts ----------------------------------------------------------------------------------
    def run(self) -> None:
        self.box.log(f"gpu campaign on {device_name(self.dev)}, {self.s.deadline_s:g} s budget,"
                     f" {'small (rehearsal)' if self.s.small else 'full'} settings")
        self.write_spec()
        for name, state in registered().items():
            if state != "registered":
                self.box.log(f"{name}: not registered, its rows are skipped")
        if "speed" in self.s.parts and "eager" in self.s.modes:
            self.speed_part(["eager"], self.clock.within(self.s.speed_s))
        if "quality" in self.s.parts:
            self.quality_part()
        if "speed" in self.s.parts:
            later = [m for m in ("graph", "compile") if m in self.s.modes]
            if later:
                self.speed_part(later, self.clock.within(self.clock.remaining() - 5))
        self.write_spec(complete=True)
        self.box.log(f"done in {self.clock.elapsed():.0f} s")

    def speed_part(self, modes: list[str], clock: Clock) -> None:
        cases, missing = speed.cases(self.s.small)
        for name, why in missing.items():
            self.status[f"speed:{name}"] = why
        spec = TimingSpec(batch=self.s.timing_batch, warmup=self.s.timing_warmup, repeats=self.s.timing_repeats,
                          max_seconds=self.s.timing_max_s)
        for mode in modes:
            precisions = sorted(self.s.precisions, key=lambda p: p != "bf16") if mode == "compile" else self.s.precisions
            for p in precisions:
                key = f"speed:{p}:{mode}"
                if mode == "compile" and clock.remaining() < self.s.compile_reserve_s:
                    self.status[key] = f"skipped: {clock.remaining():.0f} s left, compiling needs {self.s.compile_reserve_s:g}"
                    self.box.log(f"speed {p} {mode}: {self.status[key]}")
                    for case in cases:
                        self.add_timing({"label": case.label, "model": case.model, "sampler": case.sampler,
                                         "mode": mode, "network_precision": p, "network_compile": True,
                                         "batch": spec.batch, "notes": self.status[key]})
                    continue
                self.box.log(f"speed {p} {mode}")
                speed.run_config(speed.Config(p, mode), cases, small=self.s.small, device=self.dev, spec=spec,
                                 clock=clock, log=self.box.log, on_row=self.add_timing)
                self.status[key] = "done"
                self.write_spec()
                if self.dev.type == "cuda":
                    torch.cuda.empty_cache()

    def quality_part(self) -> None:
        sets = dict(self.s.model_sets)
        runs = self.work / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        deferred = []
        for model in self.s.models:
            if model not in methods.list_models():
                self.status[f"quality:{model}"] = "not registered"
                continue
            need = self.s.train_s * 1.3 + 10
            if self.clock.remaining() < need:
                self.status[f"quality:{model}"] = f"skipped: {self.clock.remaining():.0f} s left, training needs {need:.0f}"
                self.box.log(f"{model}: {self.status[f'quality:{model}']}")
                continue
            try:
                run_dir, row = quality.train_for_budget(
                    model, seconds=self.s.train_s, preset=self.s.preset, data_dir=self.s.data_dir, runs_dir=runs,
                    sets=dict(sets.get(model, ())), calibration_steps=self.s.calibration_steps,
                    min_steps=self.s.min_steps, max_steps=self.s.max_steps, log=self.box.log)
            except Exception as e:
                self.status[f"quality:{model}"] = f"training failed: {type(e).__name__}: {str(e)[:200]}"
                self.box.log(f"{model}: {self.status[f'quality:{model}']}")
                continue
            self.trains.append(row)
            self.box.write_csv("train.csv", self.trains)
            self.box.log(f"trained {model}: {row['steps']} steps in {row['train_s']} s")
            self.status[f"quality:{model}"] = "trained"
            T = getattr(read_run_config(run_dir).model, "T", None)
            for r in quality.rows_for(model, list(self.s.nfe), T=T):
                if r.deferred:
                    deferred.append((r, run_dir))
                else:
                    self.sample(r, run_dir)
            self.write_spec()
        for r, run_dir in deferred:
            self.sample(r, run_dir)

    def sample(self, row, run_dir: Path) -> None:
        n = self.s.num_samples
        reserve = self.s.graph_reserve_s if "speed" in self.s.parts and "graph" in self.s.modes else 0.0
        cost = [s["sample_s"] / (s["nfe_measured"] * s["num_samples"]) for s in self.samples
                if s["model"] == row.model and s.get("nfe_measured")]
        left = self.clock.remaining() - 5 - reserve
        name = f"{row.sampler}-{row.nfe}"
        if cost:
            est = cost[-1] * row.nfe * n * 1.1
            if est > left:
                fit = int(left / (cost[-1] * row.nfe * 1.1) // self.s.sample_batch) * self.s.sample_batch
                if not row.deferred or fit < self.s.sample_batch:
                    self.status[f"samples:{name}"] = f"skipped: about {est:.0f} s to sample, {left:.0f} s left"
                    self.box.log(f"{name}: {self.status[f'samples:{name}']}")
                    return
                self.box.log(f"{name}: {fit} samples fit the {left:.0f} s left (of {n})")
                n = fit
        elif left <= 0:
            self.status[f"samples:{name}"] = "skipped: the campaign's time budget was spent"
            return
        try:
            entry = quality.sample_row(row, run_dir, n=n, batch=self.s.sample_batch, seed=self.s.seed,
                                       precision=self.s.sample_precision, device=str(self.dev))
        except Exception as e:
            self.status[f"samples:{name}"] = f"failed: {type(e).__name__}: {str(e)[:200]}"
            self.box.log(f"{name}: {self.status[f'samples:{name}']}")
            return
        key = re.sub(r"[^A-Za-z0-9._-]", "_", entry["label"])
        file, stored = self.box.add_samples(key, entry.pop("samples"))
        self.samples.append({**entry, "key": key, "file": file, "num_stored": stored})
        self.status[f"samples:{key}"] = "done" if stored == entry["num_samples"] else f"stored {stored} of {n}"
        self.box.log(f"sampled {key}: {n} in {entry['sample_s']} s (NFE {entry['nfe_measured']}), {stored} in {file}")
        self.write_spec()


def run_campaign(settings: Settings, out: Path, echo=None) -> Path:
    """Run the campaign into `out` (created); returns `out`."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise BenchError(f"{out} is not empty; the campaign writes into an empty folder")
    Path(settings.work_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(settings.work_dir) / "inductor"))
    Campaign(settings, out, echo=echo).run()
    problems = check_folder(out)
    if problems:
        raise BenchError(f"{out} would not come back whole: {'; '.join(problems)}")
    return out


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def main(out: Path = typer.Argument(..., help="Empty folder for the results (at most 7 files)."),
         device: str = typer.Option("auto", help="auto, cpu or cuda."),
         small: bool = typer.Option(False, "--small", help="Tiny networks and few samples: the CPU rehearsal."),
         data_dir: str = typer.Option(str(ROOT / "data"), help="Folder holding MNIST/raw (idx files, .gz or plain)."),
         work_dir: str = typer.Option("/tmp/bench-gpu-campaign", help="Training runs and caches (not returned)."),
         deadline: float = typer.Option(None, help="Seconds for the whole campaign (default 450; --small 170)."),
         parts: str = typer.Option("speed,quality", help="speed and/or quality."),
         modes: str = typer.Option(None, help="Speed modes: eager, graph, compile (default all; --small eager,graph)."),
         precisions: str = typer.Option("fp32,bf16", help="Speed precisions: fp32, bf16."),
         models: str = typer.Option(",".join(quality.MODELS), help="Quality models (unregistered ones are noted)."),
         train_seconds: float = typer.Option(None, help="Training budget per model (default 60; --small 4)."),
         num_samples: int = typer.Option(None, help="Samples per quality row (default 10000; --small 200)."),
         nfe: str = typer.Option("5,10,20", help="NFE budgets of the solver table.")) -> None:
    """Run the GPU campaign (speed and MNIST quality) into OUT."""

    with user_errors():
        base = Settings(**SMALL, small=True) if small else Settings()
        given = {"device": device, "data_dir": data_dir, "work_dir": work_dir, "parts": _names(parts),
                 "precisions": _names(precisions), "models": _names(models),
                 "nfe": tuple(int(n) for n in _names(nfe))}
        for key, value in (("deadline_s", deadline), ("modes", _names(modes) if modes else None),
                           ("train_s", train_seconds), ("num_samples", num_samples)):
            if value is not None:
                given[key] = value
        settings = dataclasses.replace(base, **given)
        check(settings)
        run_campaign(settings, out, echo=lambda line: typer.echo(line, err=True))
        typer.echo(f"results: {out}")


def check(s: Settings) -> None:
    if not set(s.parts) <= {"speed", "quality"} or not s.parts:
        raise BenchError(f"--parts takes speed and/or quality, got {','.join(s.parts)!r}")
    if not set(s.modes) <= {"eager", "graph", "compile"} or not s.modes:
        raise BenchError(f"--modes takes eager, graph and/or compile, got {','.join(s.modes)!r}")
    for p in s.precisions:
        check_runtime(p, False)
    if s.num_samples < 1 or s.train_s <= 0 or s.deadline_s <= 0 or any(n < 1 for n in s.nfe):
        raise BenchError("--num-samples, --train-seconds, --deadline and --nfe must be positive")
    resolve_device(s.device)


if __name__ == "__main__":
    typer.run(main)
