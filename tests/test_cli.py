"""The command line as a user meets it: help, a tiny end-to-end comparison, and bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.results.schema import COLUMNS
from tests.conftest import files_under, invoke, one_error_line


@pytest.mark.parametrize("cmd", [[], ["train"], ["compare"], ["report"], ["list"], ["sample"], ["evaluate"],
                                 ["classifier"]])
def test_every_command_has_help(cmd, tmp_path):
    result = invoke([*cmd, "--help"], tmp_path)
    assert result.exit_code == 0 and "Usage" in result.output


def test_list_names_methods_datasets_and_suites(tmp_path):
    out = invoke(["list"], tmp_path).output
    for word in ("ddpm", "ddim", "gaussians25", "toy", "mnist-cpu", "stackedmnist", "cifar10", "mnist"):
        assert word in out


def test_tiny_compare_end_to_end_then_report_and_resume(tiny_suite, tmp_path):
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(tiny_suite), "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS
    assert set(df["label"]) == {"data (floor)", "ddpm-100", "ddim-1", "ddim-5"}
    models = df[df["sampler"] != "data"]
    assert (models["nfe_measured"] == models["nfe_declared"]).all()
    assert (models["nfe_measured"] == models["steps"]).all()
    assert models["sampler_efficiency"].notna().all() and (models["sample_ms_per_100"] > 0).all()
    assert (out / "report.md").exists() and (out / "samples.png").exists()
    assert "Trilemma" in (out / "report.md").read_text()

    (out / "report.md").unlink()
    result = invoke(["report", str(out)], tmp_path)
    assert result.exit_code == 0 and (out / "report.md").exists()

    again = invoke(["compare", "--suite", str(tiny_suite), "--out", str(out), "--no-progress"], tmp_path)
    assert again.exit_code == 0 and again.output.count("already measured") == 3
    assert len(pd.read_csv(out / "results.csv")) == 4


def test_rows_from_other_weights_are_measured_again_never_inherited(tiny_suite, tmp_path):
    """A fresh clone holds committed rows measured from other weights (or written before weights were
    recorded): they are measured again from this checkpoint and replaced, without duplicates."""
    out = tmp_path / "out"
    assert invoke(["compare", "--suite", str(tiny_suite), "--out", str(out), "--no-progress"], tmp_path).exit_code == 0
    df = pd.read_csv(out / "results.csv")
    models = df["sampler"] != "data"
    assert df.loc[models, "weights_sha256"].str.fullmatch(r"[0-9a-f]{16}").all()
    df.loc[df["label"] == "ddim-1", "weights_sha256"] = "0123456789abcdef"  # measured elsewhere
    df.loc[df["label"] == "ddim-5", "weights_sha256"] = None  # written before weights were recorded
    df.loc[df["label"].isin(["ddim-1", "ddim-5", "data (floor)"]), "git_sha"] = "elsewhere"  # the floor: other code
    df.to_csv(out / "results.csv", index=False)
    again = invoke(["compare", "--suite", str(tiny_suite), "--out", str(out), "--no-progress"], tmp_path)
    assert again.exit_code == 0, again.output
    assert "3 rows" in again.output and again.output.count("already measured") == 1
    assert "[floor]" in again.output
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 4 and df["label"].is_unique and "elsewhere" not in set(df["git_sha"])


@pytest.mark.parametrize("args,message", [
    (["compare", "--methods", "nope"], "unknown method 'nope'; choose a sampler from: cm, ddgan, ddim, ddpm, deis"),
    (["compare", "--model", "nope"], "unknown model 'nope'; choose from: autoencoder, cm, data-oracle, ddgan, ddpm, ect, edm, flow, flow-oracle, meanflow, oracle, vdm"),
    (["compare", "--methods", "ddgan", "--model", "oracle"],
     "ddgan cannot run on oracle: ddgan needs a model predicting sample; oracle predicts eps"),
    (["compare", "--methods", "vdm", "--model", "ddpm"], "vdm cannot run on ddpm: vdm needs a continuous-time model"),
    (["compare", "--methods", "ddim", "--model", "oracle", "--dataset", "swissroll"],
     "model oracle needs an isotropic Gaussian mixture dataset (gaussians25, gaussians8, gaussians4), not swissroll"),
    (["compare", "--steps", "4", "--nfe", "4"], "give --steps or --nfe, not both"),
    (["compare", "--nfe", "0"], "NFE budgets must be positive integers"),
    (["compare", "--nfe", "x"], "--nfe must be comma-separated integers"),
    (["compare", "--methods", "pndm", "--nfe", "1,2"], "pndm: no step count fits NFE budget 1"),
    (["compare", "--methods", "ddpm", "--nfe", "10"], "ddpm: no step count fits NFE budget 10 (its fewest steps make 1000"),
    (["compare", "--dataset", "nope"], "unknown dataset 'nope'; choose from: cifar10, fashion-mnist, folder, gaussians25"),
    (["compare", "--steps", "0"], "--steps must be positive"),
    (["compare", "--steps", "-3"], "--steps must be positive"),
    (["compare", "--steps", "a,b"], "--steps must be comma-separated integers"),
    (["compare", "--suite", "nope"], "unknown suite 'nope'; choose from: cifar10, cifar10-latent, cifar10-onestep, folder, folder64, mnist, mnist-cm-cpu, mnist-cpu, mnist-guidance-cpu,"),
    (["compare", "--dataset", "mnist"], "dataset mnist needs a data folder: pass --data-dir DIR or set BENCH_DATA_DIR"),
    (["compare", "--dataset", "mnist", "--data-dir", "/no/such/dir"], "data folder /no/such/dir does not exist"),
    (["compare", "--suite", "mnist-cpu", "--fid-weights", "/no/such.pth"],
     "--fid-weights /no/such.pth does not exist"),
    (["compare", "--suite", "folder"], "the folder dataset needs a path: --dataset folder:/path/to/images"),
    (["compare", "--dataset", "folder:/no/such/dir"], "folder dataset /no/such/dir does not exist"),
    (["compare", "--methods", "ddpm", "--steps", "4"], "ddpm: steps=4 is not valid: use 1000"),
    (["compare", "--methods", "ddim", "--steps", "100000"], "ddim: steps=100000 is not valid: use 1..1000"),
    (["compare", "--num-samples", "0"], "--num-samples must be in"),
    (["train", "nope"], "unknown model 'nope'"),
    (["train", "ddim"], "ddim is a sampler, not a model: train the model it samples (`bench train ddpm`)"),
    (["train", "oracle"], "oracle has nothing to train: it is built from the data"),
    (["train", "ddpm", "--set", "nope=1"], "unknown config key 'nope'; valid keys:"),
    (["train", "ddpm", "--set", "train.steps"], "malformed"),
    (["train", "ddpm", "--set", "train.steps=-1"], "train.steps must be >= 1"),
    (["train", "ddpm", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["report", "/no/such/dir"], "/no/such/dir is not a folder"),
    (["evaluate", "x.npz", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["evaluate", "/no/such.npz", "--dataset", "mnist"], "sample file /no/such.npz does not exist"),
    (["evaluate", "/no/such.npz", "--dataset", "mnist", "--vgg16-weights", "/no/vgg.pth"],
     "--vgg16-weights /no/vgg.pth does not exist"),
    (["sample", "/no/such/run", "--num", "2", "--out", "x.npz"], "/no/such/run is not a training run"),
    (["sample", "/no/such/run", "--num", "2", "--out", "x.png"], "--out must name an .npz file"),
    (["sample", "/no/such/run", "--num", "0", "--out", "x.npz"], "--num and --batch must be >= 1"),
    (["classifier", "--dataset", "cifar10"], "the domain classifier trains on mnist or fashion-mnist"),
    (["classifier"], "dataset mnist needs a data folder"),
])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(args, message, tmp_path):
    result = invoke(args, tmp_path)
    assert message in one_error_line(result)
    assert files_under(tmp_path) == [], "bad input must not write anything"


@pytest.mark.parametrize("args,env,message", [
    (["compare", "--num-samples", "abc"], {}, "Invalid value for '--num-samples'"),
    (["compare", "--bogus-flag", "1"], {}, "No such option: --bogus-flag"),
    (["train", "ddpm", "--T", "four"], {}, "Invalid value for '--T'"),
    (["sample", "runs/none"], {}, "Missing option '--num'"),
    (["compare"], {"BENCH_OFFLINE": "maybe"}, "Invalid value for '--offline'"),
])
def test_usage_errors_of_the_installed_typer_are_one_line_exit_2(args, env, message, tmp_path):
    """Through the real entry point (`python -m bench`), not CliRunner: the parser of the installed
    typer raises its own click copy's exceptions, which must end as one `error:` line too."""
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, **env, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                          timeout=120)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []
