"""Hostile suite files: each is one `error:` line, exit code 2 and no file written, before any
training starts (bench/config/suite_schema.py, then the grid's own checks)."""

from __future__ import annotations

import pytest

from tests.conftest import files_under, invoke, one_error_line

GOOD = 'methods = ["ddim"]\ndataset = "gaussians25"\nnum_samples = 100\n[steps]\nddim = [2]\n'

HOSTILE = [
    ("", "is empty: a suite needs at least `methods"),
    ('description = "nothing to run"\n', "names no samplers"),
    ('methods = ["ddim"]\n[steps]\nddim = ["four"]\n', "steps.ddim[0] must be an integer"),
    ('methods = ["ddim"]\n[steps]\nddim = [2.5]\n', "steps.ddim[0] must be an integer"),
    ('methods = ["ddim"]\n[steps]\nddim = [0]\n', "steps.ddim[0] must be in 1..1000000, got 0"),
    ('methods = ["ddim"]\nsteps = [[2]]\n', "steps[0] must be an integer"),
    ('methods = ["ddim"]\nnum_samples = "five hundred"\n', "num_samples must be an integer"),
    ('methods = ["ddim"]\nnum_samples = 500.5\n', "num_samples must be an integer"),
    ('methods = ["ddim"]\nnum_samples = 0\n', "num_samples must be in 1..1000000, got 0"),
    ('methods = ["ddim"]\nseed = "zero"\n', "seed must be an integer"),
    ('methods = ["ddim"]\nseed = -1\n', "seed must be in 0..2147483647, got -1"),
    ('methods = ["ddim"]\nseed = 10000000000\n', "seed must be in 0..2147483647"),
    ('methods = ["ddim"]\nsample_batch = 0\n', "sample_batch must be in 1..1000000, got 0"),
    ('methods = ["ddim"]\nsample_batch = true\n', "sample_batch must be an integer"),
    ('methods = ["ddim"]\nbpd_images = -5\n', "bpd_images must be in 1..1000000"),
    ('methods = ["ddim"]\n[timing]\nrepeats = 0\n', "timing.repeats must be in 1..100000, got 0"),
    ('methods = ["ddim"]\n[timing]\nbatch = -1\n', "timing.batch must be in 1..1000000"),
    ('methods = ["ddim"]\n[timing]\nmax_seconds = "soon"\n', "timing.max_seconds must be a number"),
    ('methods = ["ddim"]\n[timing]\nmax_seconds = -3.0\n', "timing.max_seconds must be a number"),
    ('methods = ["ddim"]\n[timing]\nrepeat = 3\n', "unknown config key 'timing.repeat'"),
    ('methods = "ddim"\n', "methods must be a non-empty list of names"),
    ('methods = []\n', "methods must be a non-empty list of names"),
    ('methods = [1, 2]\n', "methods[0] must be a non-empty string"),
    ('methods = ["ddim"]\nvariants = ["a", "b"]\n', "variants must be a table"),
    ('methods = ["ddim"]\nsteps = 4\n', "steps must be a non-empty list of positive integers"),
    ('methods = ["ddim"]\n[variants.x]\nmethod = "ddim"\nstep = [2]\n', "unknown key variants.x.step"),
    ('methods = ["ddim"]\n[variants.x]\nmethod = 3\n', "variants.x.method must be a non-empty string"),
    ('methods = ["ddim"]\n[variants.x]\nmethod = "ddim"\nset = "model.lr=1"\n', "variants.x.set must be a table"),
    ('methods = ["ddim"]\nmodles = ["oracle"]\n', "unknown key 'modles'"),
    ('methods = ["ddim"]\nnotes = "one note"\n', "notes must be a list of strings"),
    ('methods = ["ddim"]\n[sampler.ddim]\neta = nan\n', "sampler.ddim.eta=nan is not a finite number"),
    ('methods = ["ddim"]\n[sampler.ddim]\netaa = 1.0\n', "unknown config key 'sampler.ddim.etaa'"),
    ('methods = ["ddim"]\nsampler = 3\n', "sampler must be a table"),
    ('methods = ["ddim"]\nmetrics = [1]\n', "metrics must be a table"),
    ("methods = [\n", "is not valid TOML"),
    ('seeds = [0, 0]\nmethods = ["ddim"]\n', "seeds repeat a value"),
    ('seeds = []\nmethods = ["ddim"]\n', "seeds must be a list of 1..100 training seeds"),
    ('seeds = [-1]\nmethods = ["ddim"]\n', "seeds[0] must be in 0..2147483647"),
    ('seeds = [1.5]\nmethods = ["ddim"]\n', "seeds[0] must be an integer"),
    ('bootstrap = -1\nmethods = ["ddim"]\n', "bootstrap must be in 0..10000"),
    ('bootstrap = "many"\nmethods = ["ddim"]\n', "bootstrap must be an integer"),
]


@pytest.mark.parametrize("text,message", HOSTILE, ids=[f"case{i}" for i in range(len(HOSTILE))])
def test_hostile_suite_files_are_one_line_errors_before_any_work(text, message, tmp_path):
    suite = tmp_path / "in" / "suite.toml"
    suite.parent.mkdir()
    suite.write_text(text)
    work = tmp_path / "work"
    work.mkdir()
    line = one_error_line(invoke(["compare", "--suite", str(suite), "--no-progress"], work))
    assert message in line, line
    assert files_under(work) == [], "bad input must leave nothing behind"


def test_a_well_formed_suite_still_runs(tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(GOOD + '[variants.ddim-eta1]\nmethod = "ddim"\nmodel = "oracle"\nsteps = [2]\nsampler = { eta = 1.0 }\n')
    result = invoke(["compare", "--suite", str(suite), "--model", "oracle", "--no-progress", "--out",
                     str(tmp_path / "out")], tmp_path)
    assert result.exit_code == 0, result.output


def test_the_cli_seed_is_range_checked(tmp_path):
    assert "--seed must be in 0..2147483647" in one_error_line(
        invoke(["compare", "--methods", "ddim", "--model", "oracle", "--seed", "-4"], tmp_path))


def test_non_finite_toy_samples_are_an_error_in_a_file_and_a_note_in_a_row(tmp_path):
    import numpy as np
    import torch

    from bench.data.load import DataConfig, load_dataset
    from bench.metrics.evaluate import evaluate

    pts = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    pts[3, 1] = np.nan
    pts[7, 0] = np.inf
    np.savez(tmp_path / "s.npz", samples=pts)
    line = one_error_line(invoke(["evaluate", str(tmp_path / "s.npz"), "--dataset", "gaussians25"], tmp_path))
    assert "2 of 50 toy samples are NaN or inf" in line
    assert not (tmp_path / "results").exists()
    metrics, notes = evaluate(load_dataset(DataConfig(name="gaussians25")), torch.from_numpy(pts), seed=0)
    assert metrics == {} and notes == ["no toy metrics: 2 of 50 samples are NaN or inf"]


def test_sampling_that_diverges_is_an_error_before_quantising():
    import torch

    from bench.errors import BenchError
    from bench.measure.sampling import draw_samples
    from methods.oracle import Oracle, OracleConfig

    model = Oracle(OracleConfig(), (2,), means=torch.zeros(1, 2), std=1.0)

    class Diverging:
        label = "broken-3"

        def __call__(self, noise, *, generator):
            out = noise.clone()
            out[1] = float("nan")
            return out

    x, _, _ = draw_samples(Diverging(), model, n=8, seed=0, batch=4, device=torch.device("cpu"))
    assert torch.isnan(x).any(), "compare keeps them (its metrics note them)"
    with pytest.raises(BenchError, match="broken-3 produced 1 non-finite samples in block 0"):
        draw_samples(Diverging(), model, n=8, seed=0, batch=4, device=torch.device("cpu"), to_data=lambda t: t.clamp(0, 1),
                     require_finite=True)


def test_a_results_folder_without_spec_json_is_never_reused(tmp_path):
    """Rows whose grid cannot be checked are not counted as measured (they might be another grid's)."""
    suite = tmp_path / "suite.toml"
    suite.write_text(GOOD)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.csv").write_text("method,label,steps\nddim,ddim-2,2\n")
    line = one_error_line(invoke(["compare", "--suite", str(suite), "--model", "oracle", "--out", str(out)], tmp_path))
    assert "results.csv without spec.json" in line
    assert files_under(out) == [out / "results.csv"]
    (out / "spec.json").write_text("[1, 2]")
    assert "is not a spec written by `bench compare`" in one_error_line(
        invoke(["compare", "--suite", str(suite), "--model", "oracle", "--out", str(out)], tmp_path))
