"""Training seeds as a grid axis, their aggregate (mean, std, 95% interval), the significance rule,
and bootstrap intervals over samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.config.run import DataConfig
from bench.config.resolve import resolve_compare_spec
from bench.config.requests import CompareRequest
from bench.data.load import load_dataset
from bench.metrics.evaluate import evaluate
from bench.results.stats import compare_rows, half_width, significance_lines, summarise
from tests.conftest import invoke, one_error_line


def test_a_grid_without_seeds_keeps_its_hash_and_runs():
    """Committed results folders stay valid: the seeds axis and bootstrap enter the hash only when set."""
    committed = json.loads(Path("results/toy/spec.json").read_text())["grid_hash"]
    assert resolve_compare_spec(CompareRequest(suite="toy")).grid_hash() == committed
    assert resolve_compare_spec(CompareRequest(suite="toy", seeds=[0, 1])).grid_hash() != committed


def test_each_seed_trains_its_own_checkpoint_and_samples_with_its_seed(tiny_suite):
    spec = resolve_compare_spec(CompareRequest(suite=str(tiny_suite), seeds=[0, 1, 2]))
    assert len(spec.cells) == 3 * len(resolve_compare_spec(CompareRequest(suite=str(tiny_suite))).cells)
    ddpm = [c for c in spec.cells if c.sampler == "ddpm"]
    cfgs = [spec.run_config(c) for c in ddpm]
    assert [c.train.seed for c in cfgs] == [0, 1, 2]
    assert len({c.run_id() for c in cfgs}) == 3
    assert [spec.sampling_seed(c) for c in ddpm] == [0, 1, 2]
    # seed 0 is the preset's own run: a grid with a seeds axis reuses the single-seed checkpoint
    plain = resolve_compare_spec(CompareRequest(suite=str(tiny_suite)))
    assert plain.run_config(next(c for c in plain.cells if c.sampler == "ddpm")).run_id() == cfgs[0].run_id()


def test_student_t_interval_and_aggregate():
    assert half_width(1.0, 3) == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert math.isnan(half_width(1.0, 1))
    rows = [{"sampler": "ddim", "label": "ddim-4", "variant": "", "model": "ddpm", "steps": 4, "seed": s, "swd": v,
             "modes": m, "sampler_efficiency": e, "timing_flag": f}
            for s, v, m, e, f in ((0, 1.0, 25, 0.8, ""), (1, 2.0, 24, 1.3, "measurement error"), (2, 3.0, 25, 0.9, ""))]
    s = summarise(pd.DataFrame(rows)).iloc[0]
    assert s["n_seeds"] == 3 and s["seeds"] == "0,1,2"
    assert s["swd"] == pytest.approx(2.0) and s["swd_std"] == pytest.approx(1.0)
    assert s["swd_hi"] - s["swd"] == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    # the flagged seed's efficiency never enters the mean
    assert s["sampler_efficiency"] == pytest.approx(0.85) and s["sampler_efficiency_n"] == 2
    assert s["timing_flag"] == "measurement error (1 of 3 seeds)"


def _row(label: str, swd: float, half: float, n: int = 3) -> dict:
    return {"sampler": "ddgan", "label": label, "swd": swd, "swd_lo": swd - half, "swd_hi": swd + half, "n_seeds": n}


def test_better_only_when_intervals_do_not_overlap():
    a, b, c = (pd.Series(_row("a", 0.1, 0.02)), pd.Series(_row("b", 0.2, 0.02)), pd.Series(_row("c", 0.13, 0.02)))
    assert compare_rows(a, b, "swd") == 1 and compare_rows(b, a, "swd") == -1  # lower swd is better
    assert compare_rows(a, c, "swd") == 0
    lines = significance_lines(pd.DataFrame([_row("a", 0.1, 0.02), _row("b", 0.2, 0.02), _row("c", 0.13, 0.02)]),
                               ["swd"])
    assert len(lines) == 1
    assert "a (0.100 ± 0.020) better than b (0.200 ± 0.020)" in lines[0]
    assert "c (0.130 ± 0.020) better than b" in lines[0]
    assert "Not distinguishable at 3 seeds: the other 1 pair." in lines[0]
    one_seed = pd.DataFrame([_row("a", 0.1, math.nan, 1), _row("b", 0.2, math.nan, 1)])
    assert significance_lines(one_seed, ["swd"]) == []  # one seed: no interval, no claim


def test_compare_with_two_seeds_writes_per_seed_rows_a_summary_and_intervals(tiny_suite, tmp_path):
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(tiny_suite), "--seeds", "0,1", "--out", str(out), "--no-progress"],
                    tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert sorted(df["seed"].unique()) == [0, 1]
    assert (df.groupby("label")["seed"].nunique() == 2).all()
    models = df[df["sampler"] != "data"]
    assert models.groupby("label")["weights_sha256"].nunique().eq(2).all()  # two trainings, not one sampled twice
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["label"]) == set(df["label"]) and (summary["n_seeds"] == 2).all()
    report = (out / "report.md").read_text()
    assert "mean ± 95% Student-t interval over 2 training seeds" in report
    assert " ± " in next(ln for ln in report.splitlines() if ln.startswith("| ddim-5 |"))
    assert (out / "samples" / "ddim-5.npz").exists() and (out / "samples" / "ddim-5.seed1.npz").exists()
    again = invoke(["compare", "--suite", str(tiny_suite), "--seeds", "0,1", "--out", str(out), "--no-progress"],
                   tmp_path)
    assert again.exit_code == 0 and again.output.count("already measured") == 6


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0,0"], "seeds repeat a value"),
    (["--seeds", "-1"], "seeds must be integers in 0.."),
    (["--seeds", "a"], "--seeds must be comma-separated integers"),
    (["--bootstrap", "-3"], "--bootstrap must be in 0.."),
])
def test_bad_seeds_and_bootstrap_are_one_line_errors(args, message, tiny_suite, tmp_path):
    result = invoke(["compare", "--suite", str(tiny_suite), "--out", str(tmp_path / "o"), *args], tmp_path)
    assert message in one_error_line(result)
    assert not (tmp_path / "o").exists()


def test_a_suite_with_bad_seeds_is_one_line_error(tiny_suite, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('seeds = "0,1"\n' + tiny_suite.read_text())
    assert "seeds must be a list" in one_error_line(invoke(["compare", "--suite", str(bad)], tmp_path))


def test_bootstrap_interval_over_samples_brackets_the_estimate():
    data = load_dataset(DataConfig(name="gaussians25", num_train=2000))
    x = data.sample_data(1000, torch.Generator().manual_seed(5))
    metrics, _ = evaluate(data, x, seed=0, bootstrap=60)
    ci = json.loads(metrics["bootstrap_ci"])
    assert metrics["bootstrap"] == 60 and {"swd", "hq_fraction", "modes"} <= set(ci)
    lo, hi = ci["hq_fraction"]
    assert lo <= metrics["hq_fraction"] <= hi and hi - lo < 0.05
    lo, hi = ci["swd"]
    assert 0 < lo < hi and hi - lo < 1.0
    assert "bootstrap" not in evaluate(data, x, seed=0)[0]
