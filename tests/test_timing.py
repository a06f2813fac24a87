"""The wall-clock protocol: interleaved rounds, medians, every network counted, and an efficiency
above 1 flagged as a measurement error, even while another process burns the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from torch import nn

from bench.measure.cell import timing_columns
from bench.measure.timing import block_noise, measure, time_sampler
from bench.config.spec import TimingSpec
from bench.results.provenance import cpu_affinity
from bench.report.render import _efficiency
from tests.conftest import invoke

CPU = torch.device("cpu")


def _sleep(ms: float):
    def fn():
        t0 = time.perf_counter()
        while (time.perf_counter() - t0) * 1000 < ms:
            pass
    return fn


def test_an_efficiency_above_one_is_measured_twice_then_flagged():
    """A 'network' slower than the 'sampler' that calls it is impossible: the result is a flagged error."""
    t = measure(_sleep(1.0), [(_sleep(10.0), 1)], CPU, TimingSpec(warmup=1, repeats=7, max_seconds=0))
    assert t.efficiency > 1 and t.attempts == 2 and not t.valid and "measurement error" in t.flag
    assert timing_columns(t)["timing_flag"] == "measurement error"
    assert timing_columns(t)["sampler_efficiency"] > 1  # results.csv keeps what was measured ...
    assert _efficiency(pd.Series(timing_columns(t))) == "measurement error"  # ... the report shows no number


def test_a_cell_over_seeds_shows_its_unflagged_mean_and_how_many_seeds_were_flagged():
    some = pd.Series({"sampler_efficiency": 0.85, "timing_flag": "measurement error (1 of 3 seeds)"})
    assert _efficiency(some) == "0.85 (1 of 3 seeds: measurement error)"
    every = pd.Series({"sampler_efficiency": float("nan"), "timing_flag": "measurement error (3 of 3 seeds)"})
    assert _efficiency(every) == "measurement error"
    assert _efficiency(pd.Series({"sampler_efficiency": 0.9, "timing_flag": float("nan")})) == "0.90"


def test_medians_ignore_a_spike_and_efficiency_is_network_share():
    calls = {"n": 0}

    def run():  # 8 ms, with one 400 ms spike
        calls["n"] += 1
        _sleep(400.0 if calls["n"] == 4 else 8.0)()

    t = measure(run, [(_sleep(2.0), 2)], CPU, TimingSpec(warmup=1, repeats=9, max_seconds=0))
    assert t.valid and t.attempts == 1
    assert 7.5 < t.sample_ms < 20 and t.sample_iqr_ms < 20  # the spike moves neither
    assert 0.25 < t.efficiency < 0.8  # 2 x 2 ms of 8 ms
    # the reference workload is timed in the same rounds: times in machine-speed units
    assert t.reference_ms > 0 and t.sample_ref == pytest.approx(t.sample_ms / t.reference_ms, rel=0.5)


class TwoNets(nn.Module):
    """A sampler with two denoisers (as guidance or a teacher would be): 3 calls of a, 1 of b."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 2), nn.Sequential(*[nn.Linear(2, 2) for _ in range(50)])

    def __call__(self, noise, *, generator):
        with torch.no_grad():
            x = noise
            for _ in range(3):
                x = self.a(x)
            return self.b(x)


def test_every_network_a_sampler_calls_is_timed_with_its_call_count():
    s = TwoNets()
    t = time_sampler(s, [s.a, s.b], (2,), CPU, TimingSpec(batch=10, warmup=2, repeats=7, max_seconds=0))
    # network time is 3 forwards of a and 1 of b: the slow b dominates, so the per-call mean is far
    # above a's own forward and the efficiency stays a share of the sampler's time
    only_a = time_sampler(s, [s.a], (2,), CPU, TimingSpec(batch=10, warmup=2, repeats=7, max_seconds=0))
    assert t.forward_ms > only_a.forward_ms
    assert t.efficiency > only_a.efficiency


def test_timing_and_sampling_share_the_noise_function():
    a, gen_a = block_noise((2,), batch=5, seed=3, device=CPU)
    b, gen_b = block_noise((2,), batch=5, seed=3, device=CPU)
    assert torch.equal(a, b) and gen_a.device == gen_b.device == CPU


def test_cpu_affinity_is_recorded_as_ranges():
    text = cpu_affinity()
    assert text == "unknown" or all(part.replace("-", "").isdigit() for part in text.split(","))


@pytest.fixture
def cpu_burner():
    """One busy process per CPU for the duration of the test."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_under_a_cpu_burning_process_no_efficiency_above_one_reaches_a_row_unflagged(tiny_suite, tmp_path,
                                                                                     cpu_burner):
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(tiny_suite), "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    rows = df[df["sampler"] != "data"]
    assert len(rows) == 3 and rows["sampler_efficiency"].notna().all()
    above = rows[rows["sampler_efficiency"] > 1]
    assert (above["timing_flag"] == "measurement error").all(), above[["label", "sampler_efficiency", "timing_flag"]]
    report = (out / "report.md").read_text()
    for label in above["label"]:
        assert "measurement error" in next(ln for ln in report.splitlines() if ln.startswith(f"| {label} |"))


def test_the_code_sha_is_taken_before_the_comparison_writes(tiny_suite, tmp_path, monkeypatch):
    """Regenerating committed results rewrites tracked files; the rows must still name the commit that
    ran, not "+dirty" from the comparison's own writes."""
    import bench.measure.compare
    from bench.config.requests import CompareRequest
    from bench.config.resolve import resolve_compare_spec
    from bench.measure.compare import compare

    calls = []

    def sha():
        calls.append(1)
        return "0123abcd" if len(calls) == 1 else "0123abcd+dirty"

    monkeypatch.setattr(bench.measure.compare, "git_sha", sha)
    out = tmp_path / "out"
    compare(resolve_compare_spec(CompareRequest(suite=str(tiny_suite))), runs_dir=tmp_path / "runs", results_dir=out,
            report_dir=out, progress=False, log=lambda s: None)
    df = pd.read_csv(out / "results.csv")
    assert (df["git_sha"] == "0123abcd").all()
    assert json.loads((out / "spec.json").read_text())["git_sha"] == "0123abcd"
