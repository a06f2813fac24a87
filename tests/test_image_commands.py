"""Image comparisons, `bench sample` and `bench evaluate` as a user meets them (tiny, real MNIST)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.errors import BenchError
from bench.results.sample_files import read_samples
from bench.results.schema import COLUMNS
from tests.conftest import files_under, invoke

# --- sample files -------------------------------------------------------------------------------------

def save(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_every_documented_layout_reads_as_nchw(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    nchw = read_samples(save(tmp_path / "a.npz", samples=x), image=True)
    nhwc = read_samples(save(tmp_path / "b.npz", samples=x.transpose(0, 2, 3, 1)), image=True)
    nhw = read_samples(save(tmp_path / "c.npz", samples=x[:, 0]), image=True)
    assert nchw.dtype == torch.uint8 and nchw.shape == (5, 1, 28, 28)
    assert torch.equal(nchw, nhwc) and torch.equal(nchw, nhw)
    rgb = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    assert read_samples(save(tmp_path / "d.npz", samples=rgb), image=True).shape == (4, 3, 32, 32)


@pytest.mark.parametrize("array,message", [
    (np.zeros((4, 1, 28, 28), np.float32), "images must be uint8 pixel levels, got float32"),
    (np.zeros((4, 2, 28, 28), np.uint8), "not square images in layout"),
    (np.zeros((4, 1, 28, 20), np.uint8), "not square images in layout"),
    (np.zeros((4, 784), np.uint8), "not square images in layout"),
    (np.zeros((0, 1, 28, 28), np.uint8), "not square images in layout"),
])
def test_bad_sample_arrays_are_one_line_errors(tmp_path, array, message):
    with pytest.raises(BenchError, match=message):
        read_samples(save(tmp_path / "x.npz", samples=array), image=True)


def test_bad_sample_files_are_one_line_errors(tmp_path):
    with pytest.raises(BenchError, match="no array named 'samples' \\(found: images\\)"):
        read_samples(save(tmp_path / "x.npz", images=np.zeros((2, 28, 28), np.uint8)), image=True)
    np.save(tmp_path / "y.npy", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(BenchError, match="is a .npy array, not an .npz file"):
        read_samples(tmp_path / "y.npy", image=True)
    (tmp_path / "z.npz").write_text("not a zip")
    with pytest.raises(BenchError, match="not a readable .npz file"):
        read_samples(tmp_path / "z.npz", image=True)


@pytest.mark.parametrize("shape,message", [
    ((4, 3, 28, 28), "mnist samples are 1 x 28 x 28 or 1 x 32 x 32, got 3 x 28 x 28"),
    ((4, 1, 30, 30), "mnist samples are 1 x 28 x 28 or 1 x 32 x 32, got 1 x 30 x 30"),
    ((4, 28, 28, 1), None),
])
def test_evaluate_rejects_samples_that_cannot_be_the_dataset(tmp_path, shape, message):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    save(inputs / "s.npz", samples=np.zeros(shape, np.uint8))
    result = invoke(["evaluate", str(inputs / "s.npz"), "--dataset", "mnist", "--data-dir", "/no/such/dir",
                     "--out", str(tmp_path / "out")], tmp_path)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    # a valid layout gets as far as the data folder
    assert (message or "data folder /no/such/dir does not exist") in lines[0]
    assert files_under(tmp_path) == [inputs / "s.npz"], "nothing may be written"


# --- compare, sample, evaluate on real MNIST ----------------------------------------------------------

def test_image_compare_has_a_floor_row_grids_and_labelled_metrics_then_sample_and_evaluate(
        tiny_image_suite, shared_data, fid_weights, tmp_path):
    out = tmp_path / "out"
    args = ["--data-dir", str(shared_data), "--fid-weights", str(fid_weights)]
    result = invoke(["compare", "--suite", str(tiny_image_suite), "--out", str(out), "--no-progress", *args], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == COLUMNS and list(df["label"]) == ["data (floor)", "ddim-2"]
    assert df["fid"].notna().all() and df["precision"].notna().all() and df["is"].isna().all()
    assert (df["inception_samples"] == 6).all() and (df["num_samples"] == 6).all()
    assert "real test images" in df["notes"][0] and "IS unavailable" in df["notes"][1]
    grid = np.load(out / "samples" / "ddim-2.npz")["samples"]
    assert grid.dtype == np.uint8 and grid.shape == (6, 1, 28, 28)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["metrics"]["precision_recall_features"] == "Inception pool3"
    assert spec["metrics"]["inception"]["weights_sha256"]
    report = (out / "report.md").read_text()
    for text in ("FID (Inception pool3) ↓", "precision (Inception pool3, k=3) ↑", "| unavailable |",
                 "IS unavailable: the logits layer", "a test grid", "![samples](samples.png)"):
        assert text in report, text
    assert (out / "samples.png").exists()

    run = next((tmp_path / "runs").glob("*-ddpm-mnist"))
    result = invoke(["sample", str(run), "--method", "ddim", "--steps", "2", "--num", "6", "--batch", "4",
                     "--out", str(tmp_path / "s.npz")], tmp_path)
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "s.npz")["samples"]
    assert x.dtype == np.uint8 and x.shape == (6, 1, 28, 28)
    meta = json.loads((tmp_path / "s.json").read_text())
    assert meta["label"] == "ddim-2" and meta["nfe_measured"] == 2 and meta["model"] == "ddpm"

    result = invoke(["evaluate", str(tmp_path / "s.npz"), "--dataset", "mnist", "--suite", str(tiny_image_suite),
                     "--out", str(tmp_path / "ev"), *args], tmp_path)
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert list(row.columns) == COLUMNS and len(row) == 1
    assert row["label"][0] == "ddim-2" and row["nfe_measured"][0] == 2 and row["fid"].notna()[0]
    labels = json.loads((tmp_path / "ev" / "spec.json").read_text())["metrics"]["labels"]
    assert labels["fid"] == "FID (Inception pool3)"


def test_sample_rejects_steps_the_run_cannot_take(tiny_image_suite, shared_data, tmp_path):
    import methods
    from bench.config.run import resolve_run_config
    from bench.runs.train import train

    cfg = resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config,
                             preset=str(tiny_image_suite.parent / "tiny_image_preset.toml"),
                             sets={"data.root": str(shared_data), "train.steps": "2"})
    run = train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    for args, message in [(["--steps", "5"], "ddpm: steps=5 is not valid: use 20"),
                          (["--method", "ddim", "--steps", "50"], "ddim: steps=50 is not valid: use 1..20"),
                          (["--method", "ddim", "--opt", "nope=1"], "unknown config key 'sampler.ddim.nope'")]:
        result = invoke(["sample", str(run), "--num", "2", "--out", str(tmp_path / "x.npz"), *args], tmp_path)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "x.npz").exists()


def test_evaluate_scores_toy_points_too(tmp_path):
    from bench.data.toy2d import gaussians25

    x = gaussians25().sample(2000, torch.Generator().manual_seed(0)).numpy()
    save(tmp_path / "pts.npz", samples=x)
    result = invoke(["evaluate", str(tmp_path / "pts.npz"), "--dataset", "gaussians25", "--out", str(tmp_path / "ev")],
                    tmp_path)
    assert result.exit_code == 0, result.output
    row = pd.read_csv(tmp_path / "ev" / "results.csv")
    assert row["modes"][0] == 25 and row["label"][0] == "pts" and row["num_samples"][0] == 2000
    bad = invoke(["evaluate", str(tmp_path / "pts.npz"), "--dataset", "mnist"], tmp_path)
    assert bad.exit_code == 2 and "images must be uint8 pixel levels, got float32" in bad.output
