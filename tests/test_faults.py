"""Fault injection: kills during training and checkpoint writes, corrupt and tampered
checkpoints, an interrupted comparison, divergence, and a table of bad inputs.
Each promise in the README's Guarantees section names the test here that checks it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import methods
from bench.cli import app
from bench.config.run import resolve_run_config
from bench.errors import DivergenceError
from bench.config.run import latest_checkpoint, list_checkpoints
from bench.runs.train import train
from tests.conftest import files_under, invoke, one_error_line

REPO = Path(__file__).resolve().parents[1]
# trained on the toy preset; the autoencoder (images only) has its own tests in tests/test_latent.py
TRAINED = [n for n in methods.list_models() if methods.get_model(n).trainable and methods.get_model(n).samplable]


def bench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench", *args]


def run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read() if proc.stderr else ''}")
        if time.time() > end:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(run_dir)
    return {**load_file(ckpt / "model.safetensors"), **{f"ema:{k}": v for k, v in load_file(ckpt / "ema.safetensors").items()}}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs between the interrupted and the uninterrupted run"


def train_args(preset: Path, out: Path, steps: int = 600) -> list[str]:
    return ["train", "ddpm", "--preset", str(preset), "--out", str(out), "--no-progress",
            "--set", f"train.steps={steps}", "--set", "train.ckpt_every=100", "--set", "train.log_every=50",
            "--set", "train.keep_checkpoints=2"]


def stats_steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "stats.jsonl").read_text().splitlines()]


def test_sigkill_mid_training_then_resume_matches_the_uninterrupted_run(tiny_preset, tmp_path):
    ref = run(bench(*train_args(tiny_preset, tmp_path / "ref")), tmp_path)
    assert ref.returncode == 0, ref.stderr
    victim = tmp_path / "victim"
    proc = subprocess.Popen(bench(*train_args(tiny_preset, victim)), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_for(lambda: (victim / "checkpoints" / "step-00000200").exists(), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = int(latest_checkpoint(victim).name.split("-")[1])
    assert 200 <= killed_at < 600, "the kill must land before the end of training"
    resumed = run(bench(*train_args(tiny_preset, victim), "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {victim} from step {killed_at}" in resumed.stdout
    assert stats_steps(victim) == list(range(50, 601, 50)), "the loss curve must continue from the checkpoint"
    assert_same_weights(tmp_path / "ref", victim)


DIE_DURING_SAVE = """
import os, signal, sys
import bench.runs.checkpoint as c
real_save, calls = c.torch.save, []
def dying_save(obj, path, *a, **k):
    calls.append(path)
    if len(calls) == 2:  # the second checkpoint: write half a file, then die
        open(path, "wb").write(b"partial")
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, path, *a, **k)
c.torch.save = dying_save
sys.argv = ["bench"] + sys.argv[1:]
from bench.cli import main
main()
"""


def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(tiny_preset, tmp_path):
    ref = run(bench(*train_args(tiny_preset, tmp_path / "ref", steps=250)), tmp_path)
    assert ref.returncode == 0, ref.stderr
    victim = tmp_path / "victim"
    dead = run([sys.executable, "-c", DIE_DURING_SAVE, *train_args(tiny_preset, victim, steps=250)], tmp_path)
    assert dead.returncode == -signal.SIGKILL
    assert [p.name for p in list_checkpoints(victim)] == ["step-00000100"], "the half-written save must not count"
    assert list((victim / "checkpoints").glob(".tmp-*")), "the interrupted save is left in a temporary folder"
    resumed = run(bench(*train_args(tiny_preset, victim, steps=250), "--resume"), tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((victim / "checkpoints").glob(".tmp-*")), "temporary folders are cleaned at the next save"
    assert_same_weights(tmp_path / "ref", victim)


@pytest.fixture
def finished_run(tiny_preset, tmp_path) -> Path:
    out = tmp_path / "run"
    done = run(bench(*train_args(tiny_preset, out, steps=200)), tmp_path)
    assert done.returncode == 0, done.stderr
    return out


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("damage", ["truncate", "flip", "drop_meta"])
def test_corrupt_checkpoints_are_reported_not_loaded(damage, finished_run, tiny_preset, tmp_path):
    ckpt = latest_checkpoint(finished_run)
    target = ckpt / "model.safetensors"
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif damage == "flip":
        blob = bytearray((ckpt / "state.pt").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (ckpt / "state.pt").write_bytes(bytes(blob))
    else:
        (ckpt / "meta.json").unlink()
    result = run(bench(*train_args(tiny_preset, finished_run, steps=300), "--resume"), tmp_path)
    expected = {"truncate": "corrupt (checksum mismatch", "flip": "corrupt (checksum mismatch",
                "drop_meta": "has no meta.json"}[damage]
    one_line_error(result, expected, ckpt.name)


class Payload:
    """Unpickling this would run code: the checkpoint loader must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_would_run_code_is_refused(finished_run, tiny_preset, tmp_path):
    from bench.files import file_sha256

    ckpt = latest_checkpoint(finished_run)
    marker = tmp_path / "code-ran"
    torch.save({"evil": Payload(str(marker))}, ckpt / "state.pt")
    meta = json.loads((ckpt / "meta.json").read_text())
    meta["files"]["state.pt"] = file_sha256(ckpt / "state.pt")  # a consistent, tampered checkpoint
    (ckpt / "meta.json").write_text(json.dumps(meta))
    result = run(bench(*train_args(tiny_preset, finished_run, steps=300), "--resume"), tmp_path)
    one_line_error(result, "cannot be loaded safely")
    assert not marker.exists(), "loading a checkpoint executed code"


def test_interrupted_compare_resumes_without_duplicates(tiny_suite, tmp_path):
    out = tmp_path / "cmp"
    args = ["compare", "--suite", str(tiny_suite), "--out", str(out), "--runs-dir", str(tmp_path / "runs"),
            "--no-progress", "--steps", "1,2,3,4,5,100"]
    proc = subprocess.Popen(bench(*args), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})

    def rows() -> int:
        try:
            return len(pd.read_csv(out / "results.csv"))
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return 0

    wait_for(lambda: rows() >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    measured = rows()
    assert 3 <= measured < 8, "the kill must land mid-grid"
    again = run(bench(*args), tmp_path)
    assert again.returncode == 0, again.stderr
    df = pd.read_csv(out / "results.csv")
    assert len(df) == 8 and df["label"].is_unique
    assert again.stdout.count("already measured") == measured - 1  # the floor row is not a cell
    models = df[df["sampler"] != "data"]
    assert models[["nfe_measured", "sample_ms_per_100", "swd"]].notna().all().all(), "no half-written rows"


@pytest.mark.parametrize("name", TRAINED)
def test_divergence_stops_naming_step_and_loss_and_keeps_the_last_good_checkpoint(name, tiny_preset, tmp_path,
                                                                                     monkeypatch):
    cls = methods.get_model(name)
    cfg = resolve_run_config(name, model_cls=cls.Config, preset=str(tiny_preset))
    real_forward = cls.forward
    phase = cls.phases[-1]

    def poisoned(self, x0, *, phase: str, step: int):
        out = real_forward(self, x0, phase=phase, step=step)
        if step == 15 and phase == poisoned.phase:
            out = {**out, "loss": out["loss"] * float("nan")}
        return out

    poisoned.phase = phase
    monkeypatch.setattr(cls, "forward", poisoned)
    with pytest.raises(DivergenceError, match=rf"diverged at step 15: the {phase} loss is nan; the last good"
                                              r" checkpoint is step-00000010"):
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000010"]
    monkeypatch.setattr(cls, "forward", real_forward)
    train(cfg, tmp_path / "run", resume=True, progress=False, log=lambda s: None)
    assert latest_checkpoint(tmp_path / "run").name == "step-00000030"


NO_T = [n for n in TRAINED if "T" not in methods.get_model(n).Config.__dataclass_fields__]

BAD_INPUTS = [
    (["compare", "--methods", "nope"], "unknown method 'nope'"),
    (["compare", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["compare", "--suite", "nope"], "unknown suite 'nope'"),
    (["compare", "--steps", "0"], "--steps must be positive"),
    (["compare", "--steps", "-2"], "--steps must be positive"),
    (["compare", "--methods", "ddim", "--steps", "1000000"], "ddim: steps=1000000 is not valid"),
    (["compare", "--num-samples", "-5"], "--num-samples must be in"),
    (["compare", "--out", "/proc/bench-out"], "cannot write to /proc/bench-out"),
    (["compare", "--device", "tpu"], "--device must be auto, cpu or cuda"),
    (["train", "nope"], "unknown model 'nope'"),
    (["train", "ddpm", "--dataset", "nope"], "unknown dataset 'nope'"),
    (["train", "ddpm", "--T", "0"], "T=0 is out of range"),
    (["train", "ddpm", "--T", "1000000000"], "T=1000000000 is out of range"),
    (["train", "ddpm", "--dataset", "mnist"], "needs a data folder: pass --data-dir"),
    (["train", "ddpm", "--dataset", "mnist", "--data-dir", "/no/such/dir"], "does not exist"),
    (["train", "ddpm", "--out", "/proc/bench-run"], "cannot write to /proc/bench-run"),
    (["train", "ddpm", "--set", "train.steps"], "malformed"),
    (["train", "ddpm", "--set", "=3"], "malformed"),
    (["train", "ddpm", "--set", "train.steps=ten"], "not a valid int"),
    (["train", "ddpm", "--set", "model.net.channels=a,b"], "not a valid int"),
    (["train", "ddpm", "--set", "train.lr_schedule=linear"], "train.lr_schedule must be constant or cosine"),
    (["train", "ddpm", "--config", "/no/such.toml"], "does not exist"),
    (["report", "/no/such/dir"], "is not a folder"),
    (["train", "ddgan", "--T", "0"], "ddgan: T=0 is out of range: use 1..64"),
    (["train", "ddgan", "--T", "-1"], "ddgan: T=-1 is out of range"),
    (["train", "ddgan", "--T", "5000"], "ddgan: T=5000 is out of range"),
    (["compare", "--methods", "ddgan", "--steps", "1000"], "ddgan: T=1000 is out of range"),
    (["train", "ddpm", "--set", "model.lr=nan"], "model.lr='nan' is not a finite number"),
    (["train", "ddpm", "--set", "model.lr=inf"], "model.lr='inf' is not a finite number"),
    (["train", "ddpm", "--set", "model.lr=-1"], "model.lr must be > 0, got -1.0"),
    (["train", "ddgan", "--set", "model.lr_d=0"], "model.lr_d must be > 0, got 0.0"),
    (["train", "flow", "--set", "model.reflow=1", "--set", "model.lr=-0.5"], "model.lr must be > 0"),
    (["train", "ddpm", "--set", f"train.seed={10**30}"], "train.seed must be in 0..2147483647"),
    (["train", "ddpm", "--set", "data.num_train=0"], "data.num_train must be >= 1, got 0"),
    (["train", "ddpm", "--set", "model.net.kind=bogus"], "ddpm: unknown net.kind 'bogus'; choose from: auto, mlp, unet"),
    (["train", "flow", "--set", "model.net.kind=unet"], "flow: net.kind=unet needs image data"),
] + [(["train", name, "--T", "4"], f"--T does not apply to {name}") for name in NO_T]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_table(args, message, tmp_path):
    assert message in one_error_line(invoke(args, tmp_path))
    assert files_under(tmp_path) == [], "bad input must leave nothing behind"


def test_output_under_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = CliRunner().invoke(app, ["train", "ddpm", "--out", str(tmp_path / "afile" / "run")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_mismatched_checkpoints_are_errors(finished_run, tiny_suite, tmp_path):
    from bench.errors import BenchError
    from bench.runs.folders import build_sampler, load_model

    model, _, _ = load_model(finished_run)
    build_sampler("ddim", model, 5, None)  # a sampler of the same checkpoint is fine
    others = [n for n in methods.list_samplers() if methods.get_sampler(n).runs_on(type(model)) is not None]
    assert others
    for name in others:
        with pytest.raises(BenchError, match=f"{name} needs a .*; ddpm"):
            build_sampler(name, model, 4, None)
    cfg_path = finished_run / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model"]["net"]["hidden"] *= 2  # the weights no longer fit the architecture
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(BenchError, match="does not match the ddpm architecture"):
        load_model(finished_run)

    # a comparison whose run folder was edited after training refuses to sample it
    args = ["compare", "--suite", str(tiny_suite), "--runs-dir", str(tmp_path / "runs"), "--no-progress"]
    assert run(bench(*args, "--out", str(tmp_path / "a")), tmp_path).returncode == 0
    run_dir = next((tmp_path / "runs").iterdir())
    cfg = json.loads((run_dir / "config.json").read_text())
    cfg["model"]["lr"] = 0.123
    (run_dir / "config.json").write_text(json.dumps(cfg))
    one_line_error(run(bench(*args, "--out", str(tmp_path / "b")), tmp_path), "does not hold the run this cell needs")


def test_two_compares_that_need_one_run_train_it_once(tiny_suite, tmp_path):
    """The second process waits on the run folder's lock, then finds the run complete."""
    runs = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(bench("compare", "--suite", str(tiny_suite), "--runs-dir", str(runs), "--no-progress",
                                    "--out", str(tmp_path / name)), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    (run_dir,) = [p for p in runs.iterdir() if p.is_dir()]
    assert stats_steps(run_dir) == [10, 20, 30], "the run was trained once, not twice into one folder"
    assert sum("[train 1/1]" in out for out, _ in outs) == 1
