"""DDGAN from the command line: `bench train ddgan --T`, per-T run folders, and `--steps` in compare."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import invoke, one_error_line


def test_train_ddgan_with_t_writes_one_run_folder_per_t(tiny_preset, tmp_path):
    for T in (4, 1):
        result = invoke(["train", "ddgan", "--T", str(T), "--preset", str(tiny_preset), "--runs-dir",
                         str(tmp_path / "runs"), "--set", "train.steps=10", "--no-progress"], tmp_path)
        assert result.exit_code == 0, result.output
    runs = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "runs").iterdir())  # <run id>-<method>-<data>-T<T>
    assert runs == ["ddgan-gaussians25-T1", "ddgan-gaussians25-T4"]
    for run in (tmp_path / "runs").iterdir():
        cfg = json.loads((run / "config.json").read_text())
        assert run.name.endswith(f"-T{cfg['model']['T']}") and cfg["method"] == "ddgan"


def test_train_t_flag_also_works_for_ddpm(tiny_preset, tmp_path):
    result = invoke(["train", "ddpm", "--T", "50", "--preset", str(tiny_preset), "--set", "train.steps=10",
                     "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "config.json").read_text())["model"]["T"] == 50


@pytest.mark.parametrize("args,message", [
    (["train", "ddgan", "--T", "0"], "ddgan: T=0 is out of range: use 1..64"),
    (["train", "ddgan", "--T", "100000"], "ddgan: T=100000 is out of range: use 1..64"),
    (["train", "ddgan", "--T", "-2"], "ddgan: T=-2 is out of range"),
    (["train", "ddgan", "--set", "model.parameterization=v"], "parameterization 'v' is unknown"),
    (["compare", "--methods", "ddgan", "--steps", "0"], "--steps must be positive"),
    (["compare", "--methods", "ddgan", "--steps", "100000"], "ddgan: T=100000 is out of range: use 1..64"),
])
def test_bad_t_is_one_error_line_and_writes_nothing(args, message, tmp_path):
    assert message in one_error_line(invoke(args, tmp_path))
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.fixture
def ddgan_suite(tmp_path: Path, tiny_preset: Path) -> Path:
    path = tmp_path / "ddgan_suite.toml"
    path.write_text(textwrap.dedent(f"""
        dataset = "gaussians25"
        preset = "{tiny_preset}"
        methods = ["ddpm", "ddim", "ddgan"]
        num_samples = 100
        sample_batch = 100
        [steps]
        ddpm = [100]
        ddim = [2]
        ddgan = [2]
        [variants.ddgan-noz]
        method = "ddgan"
        steps = [2]
        set = {{ "model.use_z" = false }}
        [timing]
        batch = 20
        warmup = 1
        repeats = 3
        max_seconds = 2
    """))
    return path


def test_compare_steps_select_and_train_ddgan_t_runs(ddgan_suite, tmp_path):
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(ddgan_suite), "--methods", "ddgan,ddim,ddpm", "--steps", "1,2,100",
                     "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    ddgan = df[df["sampler"] == "ddgan"]
    assert sorted(ddgan["label"]) == ["ddgan-T1", "ddgan-T2"]
    assert (ddgan["nfe_measured"] == ddgan["steps"]).all() and (ddgan["nfe_declared"] == ddgan["steps"]).all()
    assert {"ddim-1", "ddim-2", "ddim-100", "ddpm-100"} <= set(df["label"])
    runs = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "runs").iterdir())
    assert runs == ["ddgan-gaussians25-T1", "ddgan-gaussians25-T2", "ddpm-gaussians25"]
    report = (out / "report.md").read_text()
    assert "ddgan-T2" in report and "speed-up vs" in report


def test_a_suite_variant_is_its_own_ddgan_run_and_row(ddgan_suite, tmp_path):
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(ddgan_suite), "--methods", "ddgan,ddgan-noz", "--out", str(out),
                     "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert sorted(df[df["sampler"] == "ddgan"]["label"]) == ["ddgan-T2", "ddgan-noz-T2"]
    assert len(list((tmp_path / "runs").iterdir())) == 2
    settings = df.set_index("label").loc["ddgan-noz-T2", "sampler_settings"]
    assert json.loads(settings)["use_z"] is False
