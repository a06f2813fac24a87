"""Part (a) of the GPU campaign: the papers' CIFAR-10 architectures at batch 100 (bench.benchmarks.gpu_timing's
cases), in fp32 and bf16, eager, with torch.compile, and with the whole sampling loop captured in one CUDA graph
where the sampler allows it.

Each (precision, mode) configuration builds each architecture once and times all its samplers on it (DDPM-1000,
DDIM-50 and DPM-Solver++(2M)-10 share the DDPM UNet, so torch.compile compiles it once per configuration).
Timing is bench's protocol (bench/measure/timing.py): sampler and network forwards in interleaved rounds, medians, and
`sampler_efficiency` = network time / sampler time. Samplers of 200 or more network calls (DDPM-1000) get one
warm-up and one timed round after the counting call: a round takes seconds there, and the budget is minutes.

CUDA graphs ("graph" mode): the sampler's whole call is captured once (static noise in, static samples out)
and replayed; its networks' forwards are captured the same way, so the efficiency compares graph with graph.
A replay must reproduce the eager call's samples (to 1e-3 of their scale), else the row says it differs. A
sampler that draws fresh noise inside its loop (DDPM's ancestral steps, DDGAN's z) takes it from a CPU
generator, which a graph cannot replay: such rows say so instead of a time.
"""

from __future__ import annotations

import dataclasses
import datetime
import time

import torch

import methods
from bench.benchmarks import gpu_timing
from bench.benchmarks.campaign_quality import (
    valid_sets,  # a model gpu_timing does not size (edm)
)
from bench.benchmarks.gpu_timing import Case
from bench.config.run import resolve_run_config
from bench.measure import runtime
from bench.measure.timing import _forward, block_noise, capture_first_call, count_calls, measure, time_sampler
from bench.config.spec import TimingSpec
from bench.runs.folders import build_sampler

PAPER_SPEEDUP = 80.5 / 0.21  # DDGAN T = 4 over DDPM-1000 on one V100, CIFAR-10 (Xiao et al. 2022, Table 1): 383x
SLOW_NFE = 200  # samplers with at least this many calls: 1 warm-up + 1 timed round


def cases(small: bool) -> tuple[list[Case], dict[str, str]]:
    """The speed cases, with EDM-Heun-35 when a model `edm` and a sampler `edm-heun` are registered;
    and what is missing, by name ("not registered")."""
    out, missing = list(gpu_timing.CASES), {}
    have_model, have_sampler = "edm" in methods.list_models(), "edm-heun" in methods.list_samplers()
    if not have_model:
        missing["edm"] = "not registered"
    if not have_sampler:
        missing["edm-heun"] = "not registered"
    if have_model and have_sampler:
        out.append(Case("edm-heun-35", "edm", "edm-heun", 35, None))  # steps resolved from NFE 35 below
    return out, missing


def case_steps(case: Case, model: methods.Model, small: bool) -> int:
    if case.model == "ddgan":
        return int(model.cfg.T)  # each T is its own checkpoint: the architecture was built for it
    if case.model == "edm":
        cls = methods.get_sampler(case.sampler)
        nfe = 9 if small else 35
        return cls.steps_for_nfe(nfe, type(model), model.cfg, cls.Options()) or 1
    if small:
        return gpu_timing.SMALL_STEPS.get(case.label, 2 if case.model == "ddgan" else case.steps)
    return case.steps


def build(case: Case, *, small: bool, device: torch.device) -> methods.Model:
    """The case's architecture with random weights (speed does not depend on them)."""
    if case.model in gpu_timing.SMALL:
        return gpu_timing.build_model(case, small=small, device=device)

    cls = methods.get_model(case.model)
    sets = valid_sets(cls, gpu_timing.SMALL["ddpm"]) if small else {}
    cfg = resolve_run_config(case.model, model_cls=cls.Config, preset="cifar10", dataset="cifar10", sets=sets)
    torch.manual_seed(0)
    return cls(cfg.model, (3, 8, 8) if small else gpu_timing.SHAPE).to(device).eval()


@dataclasses.dataclass(frozen=True)
class Config:
    precision: str  # fp32 | bf16
    mode: str  # eager | compile | graph

    @property
    def compile_(self) -> bool:
        return self.mode == "compile"


def ordered(case_list: list[Case]) -> list[Case]:
    """Slow samplers last in each configuration, so their cost can be estimated from the same network's
    forwards in the rows before them (and they are skipped when that estimate exceeds the time left)."""
    return sorted(case_list, key=lambda c: c.steps >= SLOW_NFE)


def estimate_s(rows: list[dict], model: str, nfe: int, spec: TimingSpec) -> float | None:
    """Seconds the protocol will take for `nfe` calls of `model`'s network, from an earlier row of it."""
    fwd = [r["forward_ms_per_100"] for r in rows if r["model"] == model and r.get("forward_ms_per_100")]
    if not fwd:
        return None
    per_call_s = fwd[-1] * spec.batch / 100 / 1000
    rounds = 3 if nfe >= SLOW_NFE else 1 + spec.warmup + spec.repeats
    return per_call_s * (nfe * rounds + min(nfe, 32) * rounds) * 1.2


def run_config(config: Config, case_list: list[Case], *, small: bool, device: torch.device, spec: TimingSpec,
               clock, log, on_row=lambda row: None) -> list[dict]:
    """Rows of every case in one configuration; each model is built (and compiled) once."""
    rows, models = [], {}

    def add(row: dict) -> None:
        row = {**row, "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        rows.append(row)
        on_row(row)

    for case in ordered(case_list):
        base = {"label": case.label, "model": case.model, "sampler": case.sampler, "mode": config.mode,
                **runtime.describe(config.precision, config.compile_), "batch": spec.batch,
                "paper_v100_s_per_100": None if small else case.paper_v100_s_per_100}
        if clock.remaining() <= 0:
            add({**base, "notes": "skipped: the campaign's time budget was spent"})
            continue
        if config.mode == "graph" and (device.type != "cuda" or methods.get_sampler(case.sampler).stochastic):
            add({**base, "notes": "not captured: " + ("CUDA graphs need a CUDA device" if device.type != "cuda" else
                 "the sampler draws fresh noise from a CPU generator inside its loop")})
            continue
        t0 = time.perf_counter()
        try:
            if case.model not in models:
                models[case.model] = build(case, small=small, device=device)
                runtime.prepare(models[case.model].denoisers(), precision=config.precision,
                                compile_=config.compile_, device=device)
            model = models[case.model]
            steps = case_steps(case, model, small)
            label = f"ddgan-T{steps}" if case.model == "ddgan" else f"{case.sampler}-{steps}"
            base = {**base, "label": label, "steps": steps,
                    "parameters_m": round(sum(p.numel() for p in model.denoisers()[0].parameters()) / 1e6, 2)}
            sampler = build_sampler(case.sampler, model, steps, methods.get_sampler(case.sampler).Options())
            row_spec = spec if sampler.nfe < SLOW_NFE else dataclasses.replace(spec, warmup=1, repeats=1, max_seconds=0)
            est = estimate_s(rows, case.model, sampler.nfe, spec)
            if est is not None and est > clock.remaining():
                add({**base, "nfe_declared": sampler.nfe,
                     "notes": f"skipped: about {est:.0f} s to time, {clock.remaining():.0f} s left in the budget"})
                log(f"  {label} {config.precision} {config.mode}: {rows[-1]['notes']}")
                continue
            if config.mode == "graph":
                t, note = time_graph(sampler, model, device, row_spec,
                                     stochastic=methods.get_sampler(case.sampler).stochastic)
            else:
                t, note = time_sampler(sampler, model.denoisers(), model.data_shape, device, row_spec), ""
        except Exception as e:  # a configuration this platform cannot run is a row that says why
            add({**base, "notes": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
                         if str(e) else f"failed: {type(e).__name__}", "wall_s": round(time.perf_counter() - t0, 1)})
            log(f"  {base['label']} {config.precision} {config.mode}: {rows[-1]['notes']}")
            continue
        if t is None:
            add({**base, "nfe_declared": sampler.nfe, "notes": note,
                         "wall_s": round(time.perf_counter() - t0, 1)})
            log(f"  {base['label']} {config.precision} {config.mode}: {note}")
            continue
        add(timed_row(base, sampler.nfe, t, note, spec, t0))
        log(f"  {label} {config.precision} {config.mode}: {rows[-1]['sample_s_per_100']:.4g} s / 100 images,"
            f" efficiency {t.efficiency:.2f} ({rows[-1]['wall_s']} s)")
    return rows


def timed_row(base: dict, nfe: int, t, note: str, spec: TimingSpec, t0: float) -> dict:
    """A timed case's row: times per 100 images (the papers' unit), whatever the batch it was timed at."""
    scale = 100 / spec.batch / 1000  # ms per batch -> s per 100 images
    return {**base, "nfe_declared": nfe, "sample_s_per_100": t.sample_ms * scale,
            "sample_s_per_100_iqr": t.sample_iqr_ms * scale,
            "forward_ms_per_100": t.forward_ms * 100 / spec.batch, "sampler_efficiency": t.efficiency,
            "timing_warmup": t.warmup, "timing_repeats": t.repeats,
            "notes": "; ".join(n for n in (t.flag, note) if n),
            "wall_s": round(time.perf_counter() - t0, 1)}


def time_graph(sampler, model: methods.Model, device: torch.device, spec: TimingSpec, *, stochastic: bool):
    """(Timing, note) of the sampler's whole call replayed as one CUDA graph, or (None, why not)."""
    if device.type != "cuda":
        return None, "not captured: CUDA graphs need a CUDA device"
    if stochastic:
        return None, "not captured: the sampler draws fresh noise from a CPU generator inside its loop"
    nets = model.denoisers()
    noise, gen = block_noise(model.data_shape, batch=spec.batch, seed=0, device=device)
    with torch.no_grad():
        with capture_first_call(nets[0]) as first, count_calls(nets) as counter:
            eager = sampler(noise.clone(), generator=gen)
        static = noise.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            sampler(static, generator=gen)  # warm-up on a side stream, as capture requires
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = sampler(static, generator=gen)
        graph.replay()
        torch.cuda.synchronize(device)
        diff = float((out - eager).abs().max()) / max(float(eager.abs().max()), 1e-6)
        if not diff <= 1e-3:
            return None, f"not used: the graph's replay differs from the eager call by {diff:.2g} (relative)"
        fwd = _forward(nets[0], first)
        fwd()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fwd()
        torch.cuda.current_stream().wait_stream(side)
        fgraph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(fgraph, capture_error_mode="thread_local"):
            fwd()
    calls = counter["per_module"][0]
    return measure(graph.replay, [(fgraph.replay, calls)], device, spec), "whole sampling loop in one CUDA graph"


def speedups(rows: list[dict]) -> list[dict]:
    """Each row's speed-up over DDPM-1000 in the same configuration, DDGAN's beside the paper's 383x."""
    ref = {(r["network_precision"], r["mode"]): r.get("sample_s_per_100") for r in rows
           if r["model"] == "ddpm" and r["sampler"] == "ddpm" and r.get("sample_s_per_100")}
    out = []
    for r in rows:
        base, t = ref.get((r["network_precision"], r["mode"])), r.get("sample_s_per_100")
        out.append({**r, "speedup_vs_ddpm": round(base / t, 1) if base and t else None,
                    "paper_speedup_vs_ddpm1000": round(PAPER_SPEEDUP) if r["model"] == "ddgan" else None})
    return out
