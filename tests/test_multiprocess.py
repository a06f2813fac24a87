"""Two processes on CPU (torchrun + gloo through `accelerate launch --multi_gpu`), launched from the test:
training that is killed and resumes exactly, a NaN or a stop signal on one rank that ends every rank with
the one-line message, processes whose weights drift apart, and a sharded `bench compare` whose numbers
and files are those of one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.config.run import latest_checkpoint
from tests.test_faults import assert_same_weights, stats_steps

pytestmark = pytest.mark.multiprocess  # about 2 minutes: `pytest -m multiprocess` (.ci/run runs them)

REPO = Path(__file__).resolve().parents[1]
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "BENCH_OFFLINE": "1"}


def launch(args: list[str], cwd: Path, *, script: str | None = None, timeout: float = 240,
           processes: int = 2) -> subprocess.CompletedProcess:
    """`bench ARGS` (or a wrapper `script` around it) in `processes` processes, or in one without the launcher."""
    target = [str(cwd / "wrapper.py")] if script else ["-m", "bench"]
    if script:
        (cwd / "wrapper.py").write_text(script)
    cmd = [*LAUNCH[:5], str(processes), *LAUNCH[6:], *target, *args] if processes > 1 \
        else [sys.executable, *target, *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env())


def train_args(preset: Path, method: str, out: Path, steps: int) -> list[str]:
    extra = ["--T", "2"] if method == "ddgan" else []
    return ["train", method, *extra, "--preset", str(preset), "--out", str(out), "--no-progress",
            "--set", f"train.steps={steps}", "--set", "train.ckpt_every=10", "--set", "train.log_every=10"]


WRAP = """
import os, signal, sys
import methods
cls = methods.get_model({method!r})
real = cls.forward
def forward(self, x0, *, phase, step, **kw):
    out = real(self, x0, phase=phase, step=step, **kw)
    if os.environ.get("RANK") == "1" and step == {step}:
        {action}
    return out
cls.forward = forward
sys.argv = ["bench"] + sys.argv[1:]
from bench.cli import main
main()
"""


@pytest.mark.parametrize("method", ["ddpm", "ddgan"])
def test_two_processes_train_killed_and_resumed_match_the_uninterrupted_run(method, tiny_preset, tmp_path):
    ref = launch(train_args(tiny_preset, method, tmp_path / "ref", 80), tmp_path)
    assert ref.returncode == 0, ref.stderr[-3000:]
    env_json = json.loads((tmp_path / "ref" / "env.json").read_text())
    assert (env_json["processes"], env_json["global_batch"], env_json["per_process_batch"]) == (2, 64, 32)
    assert stats_steps(tmp_path / "ref") == list(range(10, 81, 10))
    state = torch.load(latest_checkpoint(tmp_path / "ref") / "state.pt", weights_only=True)
    assert len(state["ranks"]) == 2 and not torch.equal(state["ranks"][0]["torch"], state["ranks"][1]["torch"])

    victim = tmp_path / "victim"
    proc = subprocess.Popen([*LAUNCH, "-m", "bench", *train_args(tiny_preset, method, victim, 80)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), start_new_session=True)
    end = time.time() + 180
    while not (victim / "checkpoints" / "step-00000020").exists():
        assert proc.poll() is None and time.time() < end, "the victim ended or stalled before step 20"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher, and both ranks (torchrun gives them sessions of their own)
    subprocess.run(["pkill", "-KILL", "-f", str(victim)], check=False)
    proc.wait()
    time.sleep(0.5)
    killed_at = int(latest_checkpoint(victim).name.split("-")[1])
    assert 20 <= killed_at < 80, "the kill must land before the end of training"
    resumed = launch(train_args(tiny_preset, method, victim, 80) + ["--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {victim} from step {killed_at}" in resumed.stdout
    assert stats_steps(victim) == list(range(10, 81, 10))
    assert_same_weights(tmp_path / "ref", victim)  # every rank got its own RNG and data order back


def test_a_nan_on_one_rank_ends_both_with_the_one_line_error(tiny_preset, tmp_path):
    script = WRAP.format(method="ddpm", step=15, action='out = {**out, "loss": out["loss"] * float("nan")}')
    result = launch(train_args(tiny_preset, "ddpm", tmp_path / "run", 40), tmp_path, script=script, timeout=180)
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: training diverged at step 15")]
    assert len(errors) == 2, result.stderr[-3000:]  # both ranks stopped, neither waits in the all-reduce
    assert any("the model loss is nan (process 1 of 2)" in e for e in errors)
    assert any("finite here but not on another rank (process 0 of 2)" in e for e in errors)
    assert all("the last good checkpoint is step-00000010" in e for e in errors)
    assert latest_checkpoint(tmp_path / "run").name == "step-00000010"


def test_a_stop_signal_to_one_rank_checkpoints_and_stops_both(tiny_preset, tmp_path):
    script = WRAP.format(method="ddpm", step=13, action="os.kill(os.getpid(), signal.SIGTERM)")
    result = launch(train_args(tiny_preset, "ddpm", tmp_path / "run", 40), tmp_path, script=script, timeout=180)
    assert result.returncode != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error: interrupted at step 14")]
    assert len(lines) == 2, result.stderr[-3000:]
    assert latest_checkpoint(tmp_path / "run").name == "step-00000014"
    resumed = launch(train_args(tiny_preset, "ddpm", tmp_path / "run", 40) + ["--resume"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_processes_whose_weights_drift_apart_are_an_error_not_a_checkpoint(tiny_preset, tmp_path):
    script = WRAP.format(method="ddpm", step=5, action="next(self.parameters()).data.add_(1.0)")  # rank 1 only
    result = launch(train_args(tiny_preset, "ddpm", tmp_path / "run", 40), tmp_path, script=script, timeout=180)
    assert result.returncode != 0
    assert "error: the processes' weights differ at step 10" in result.stderr, result.stderr[-3000:]
    assert latest_checkpoint(tmp_path / "run") is None


def compare_args(suite: Path, out: Path, *extra: str) -> list[str]:
    return ["compare", "--suite", str(suite), "--out", str(out), "--runs-dir", "runs", "--no-progress", *extra]


def same_results(one: Path, two: Path, metrics: list[str], rtol: float = 0.0) -> pd.DataFrame:
    a, b = pd.read_csv(one / "results.csv"), pd.read_csv(two / "results.csv")
    assert list(a["label"]) == list(b["label"]) and len(b) == len(set(b["label"]))  # one row per cell
    for col in metrics:
        assert np.allclose(a[col].astype(float), b[col].astype(float), rtol=rtol, atol=0, equal_nan=True), col
    names = lambda d: sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file())  # noqa: E731
    assert names(one) == names(two)  # one copy of each file, written once
    for f in (one / "samples").glob("*.npz"):
        assert np.array_equal(np.load(f)["samples"], np.load(two / "samples" / f.name)["samples"]), f.name
    return b


def test_a_two_process_compare_gives_the_one_process_samples_and_metrics(tiny_suite, tmp_path):
    one = launch(compare_args(tiny_suite, tmp_path / "one"), tmp_path, processes=1)  # trains the checkpoint
    assert one.returncode == 0, one.stderr[-3000:]
    two = launch(compare_args(tiny_suite, tmp_path / "two"), tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("results: ") == 1  # one process speaks for the launch
    b = same_results(tmp_path / "one", tmp_path / "two", ["nfe_measured", "modes", "hq_fraction", "mode_kl", "swd"])
    rows = b[b["sampler"] != "data"]
    assert rows["notes"].str.contains("sampled by 2 processes; timed on process 0 alone").all()
    assert rows["sample_ms_per_100"].notna().all()


def test_a_two_process_image_compare_shards_the_features(tiny_image_suite, shared_data, fid_weights, tmp_path):
    extra = ["--data-dir", str(shared_data), "--fid-weights", str(fid_weights), "--num-samples", "12"]  # 2 blocks
    one = launch(compare_args(tiny_image_suite, tmp_path / "one", *extra, "--cache-dir", str(tmp_path / "c1")),
                 tmp_path, processes=1)
    assert one.returncode == 0, one.stderr[-3000:]
    # a cache of its own: the reference features are extracted by both processes too
    two = launch(compare_args(tiny_image_suite, tmp_path / "two", *extra, "--cache-dir", str(tmp_path / "c2")), tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    b = same_results(tmp_path / "one", tmp_path / "two", ["fid", "kid", "precision", "recall"], rtol=1e-4)
    assert b["fid"].notna().all()


def test_logged_values_are_averaged_over_the_processes(tiny_preset, tmp_path):
    script = WRAP.format(method="ddpm", step="step", action="pass").replace(
        "    return out\n", '    return {**out, "probe": out["loss"].detach() * 0 + float(os.environ["RANK"])}\n')
    result = launch(train_args(tiny_preset, "ddpm", tmp_path / "run", 20), tmp_path, script=script)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [s["model/probe"] for s in stats] == [0.5, 0.5]  # ranks 0 and 1: the mean, not rank 0's 0
