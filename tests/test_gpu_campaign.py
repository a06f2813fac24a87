"""The GPU campaign (python -m bench.benchmarks.gpu_campaign) rehearsed on the CPU: the same code path as on the
device machine, with tiny networks, short trainings and few samples; and its results folder's limits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.benchmarks import campaign_score
from bench.benchmarks.campaign_files import NAME, Outbox, check_folder
from bench.benchmarks.gpu_campaign import SMALL, SMALL_SETS, Settings, run_campaign
from bench.errors import BenchError
from bench.results.sample_files import read_meta, read_samples


def tiny(tmp_path: Path, data: Path | str = "", **changes) -> Settings:
    """The --small settings, smaller still: one precision, one NFE budget, one block of samples."""
    sets = {m: tuple({**s, "model.T": 20}.items()) if m == "ddpm" else tuple(s.items()) for m, s in SMALL_SETS.items()}
    base = Settings(**{**SMALL, "model_sets": tuple(sets.items())}, small=True)
    return dataclasses.replace(base, device="cpu", data_dir=str(data), work_dir=str(tmp_path / "work"),
                               precisions=("fp32",), nfe=(5,), num_samples=100, sample_batch=100, train_s=1.0,
                               calibration_steps=2, min_steps=4, max_steps=8, timing_repeats=1, timing_warmup=1,
                               **changes)


def check_results(out: Path, settings: Settings) -> dict:
    assert check_folder(out) == []
    names = sorted(p.name for p in out.iterdir())
    assert len(names) <= 7 and all(NAME.match(n) for n in names)
    assert {"spec.json", "progress.log", "timing.csv", "train.csv", "samples-1.npz"} <= set(names)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["complete"] and spec["registered"]["ddpm"] == "registered"
    if "edm" not in spec["registered"] or spec["registered"]["edm"] == "not registered":
        assert spec["parts"]["quality:edm"] == "not registered"
    timing = pd.read_csv(out / "timing.csv")
    eager = timing[timing["mode"] == "eager"]
    assert {"ddgan", "ddpm"} <= set(eager["model"])
    assert eager["sample_s_per_100"].notna().all(), eager["notes"].tolist()
    assert ((eager["sampler_efficiency"] > 0) & (eager["sampler_efficiency"] <= 1.0)).all() or \
        eager["notes"].fillna("").str.contains("measurement error").any()
    assert eager.loc[eager["model"] == "ddgan", "paper_speedup_vs_ddpm1000"].eq(383).all()
    assert eager["speedup_vs_ddpm"].notna().all()
    graph = timing[timing["mode"] == "graph"]
    assert graph["notes"].str.startswith("not captured").all()  # no CUDA here: every row says why
    train = pd.read_csv(out / "train.csv")
    assert set(train["model"]) == {m for m in settings.models if m in spec["registered"]
                                   and spec["registered"][m] == "registered"}
    stored = {s["key"]: s for s in spec["samples"]}
    assert {"ddim-5", "dpmpp-2m-5", "unipc-5", "flow-5", "ddgan-T4"} <= set(stored)
    assert [s["steps"] for s in spec["samples"] if s["sampler"] == "ddpm"] == [dict(dict(settings.model_sets)["ddpm"])
                                                                               ["model.T"]]  # ancestral, all T steps
    with np.load(out / "samples-1.npz") as f:
        x = f["ddim-5"]
    assert x.dtype == np.uint8 and x.shape == (settings.num_samples, 1, 28, 28)
    assert all(s["num_stored"] == s["num_samples"] == settings.num_samples for s in spec["samples"])
    assert all(s["nfe_measured"] == s["nfe_declared"] for s in spec["samples"])
    return spec


def test_rehearsal_runs_the_campaign_end_to_end_and_unpacks_for_bench_evaluate(tmp_path, shared_data):
    torch.set_num_threads(1)
    settings = tiny(tmp_path, shared_data)
    out = run_campaign(settings, tmp_path / "out")
    spec = check_results(out, settings)
    # the CPU half: unpack into files `bench evaluate` reads, with their identity beside them
    files = campaign_score.unpack(out, tmp_path / "results")
    assert sorted(p.stem for p in files) == sorted(s["key"] for s in spec["samples"])
    x = read_samples(tmp_path / "results" / "samples" / "ddgan-T4.npz", image=True)
    assert tuple(x.shape) == (100, 1, 28, 28)
    meta = read_meta(tmp_path / "results" / "samples" / "ddgan-T4.npz")
    assert meta["sampler"] == "ddgan" and meta["nfe_measured"] == 4 and meta["run_id"]
    text = campaign_score.report(out, None)
    assert "383x" in text and "ddgan-T4" in text and "## Training" in text


@pytest.mark.slow
def test_the_documented_rehearsal_small_device_cpu(tmp_path, shared_data):
    """`python -m bench.benchmarks.gpu_campaign OUT --small --device cpu` (docs/GPU.md): under 3 minutes."""
    import typer
    from typer.testing import CliRunner

    from bench.benchmarks.gpu_campaign import main

    app = typer.Typer()
    app.command()(main)
    result = CliRunner().invoke(app, [str(tmp_path / "out"), "--small", "--device", "cpu", "--data-dir", str(shared_data),
                                      "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "out" / "spec.json").read_text())
    assert spec["elapsed_s"] < 180
    check_results(tmp_path / "out", dataclasses.replace(Settings(**SMALL, small=True)))


def test_a_cut_short_budget_skips_with_reasons_and_still_writes_complete_files(tmp_path):
    """A budget already spent: nothing is measured, every part says why, the files are whole."""
    settings = dataclasses.replace(tiny(tmp_path, tmp_path / "nowhere"), deadline_s=0.001)
    out = run_campaign(settings, tmp_path / "out")
    assert check_folder(out) == []
    spec = json.loads((out / "spec.json").read_text())
    assert spec["complete"] and spec["samples"] == []
    assert all(v.startswith(("skipped", "not registered")) or v == "done" for v in spec["parts"].values())
    timing = pd.read_csv(out / "timing.csv")
    assert timing["sample_s_per_100"].isna().all() if "sample_s_per_100" in timing else True
    assert timing["notes"].str.contains("skipped|not captured").all()


def test_outbox_packs_rows_into_at_most_three_files_and_cuts_only_what_cannot_fit(tmp_path):
    box = Outbox(tmp_path, npz_files=2, file_limit=300_000)
    rng = np.random.default_rng(0)
    noisy = [rng.integers(0, 256, (200, 1, 28, 28), dtype=np.uint8) for _ in range(4)]  # 157 kB each, incompressible
    placed = [box.add_samples(f"row-{i}", x) for i, x in enumerate(noisy)]
    assert placed[0] == ("samples-1.npz", 200) and placed[1] == ("samples-2.npz", 200)
    assert placed[2][0] == "samples-2.npz" and 0 < placed[2][1] < 200 and placed[2][1] % 100 == 0
    assert placed[3] == ("", 0)  # no room at all: the caller records it, nothing is written half
    zeros = np.zeros((200, 1, 28, 28), np.uint8)
    assert box.add_samples("blank", zeros)[1] == 200  # compressible rows still fit the last file
    with np.load(tmp_path / "samples-2.npz") as f:
        assert sorted(f.files) == ["blank", "row-1", "row-2"]
        assert np.array_equal(f["row-2"], noisy[2][:placed[2][1]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples-1.npz", "samples-2.npz"]
    with pytest.raises(ValueError):
        box.add_samples("bad/name", zeros)


def test_check_folder_names_what_the_return_path_refuses(tmp_path):
    for i in range(9):
        (tmp_path / f"f{i}.txt").write_text("x")
    (tmp_path / "a b.txt").write_text("x")
    problems = check_folder(tmp_path)
    assert any("10 files" in p for p in problems) and any("a b.txt" in p for p in problems)


def test_campaign_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.csv").write_text("x")
    with pytest.raises(BenchError, match="not empty"):
        run_campaign(tiny(tmp_path), tmp_path / "out")
