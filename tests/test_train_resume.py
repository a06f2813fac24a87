"""The training harness: outputs, exact resume, divergence handling."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

import methods
from bench.config.run import resolve_run_config
from bench.errors import BenchError, DivergenceError
from bench.config.run import list_checkpoints
from bench.runs.train import train


def tiny_cfg(preset, **sets):
    return resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config, preset=str(preset),
                              sets={k.replace("__", "."): str(v) for k, v in sets.items()})


def weights(ckpt):
    return load_file(ckpt / "model.safetensors"), load_file(ckpt / "ema.safetensors")


def test_training_writes_config_stats_and_checkpoints(tiny_preset, tmp_path):
    run = train(tiny_cfg(tiny_preset), tmp_path / "run", progress=False, log=lambda s: None)
    assert json.loads((run / "config.json").read_text())["method"] == "ddpm"
    assert "git_sha" in json.loads((run / "env.json").read_text())
    stats = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [10, 20, 30]
    assert all("model/loss" in s and "lr/model" in s for s in stats)
    assert [p.name for p in list_checkpoints(run)] == ["step-00000010", "step-00000020", "step-00000030"]


def test_resume_reproduces_the_uninterrupted_run(tiny_preset, tmp_path):
    full = train(tiny_cfg(tiny_preset, train__lr_schedule="cosine"), tmp_path / "full", progress=False,
                 log=lambda s: None)
    # a run that stopped after its step-10 checkpoint: copy what it would have on disk
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "env.json"):
        shutil.copy(full / name, part / name)
    shutil.copytree(full / "checkpoints" / "step-00000010", part / "checkpoints" / "step-00000010")
    (part / "stats.jsonl").write_text((full / "stats.jsonl").read_text())  # newer lines must be dropped
    train(tiny_cfg(tiny_preset, train__lr_schedule="cosine"), part, resume=True, progress=False, log=lambda s: None)
    for a, b in zip(weights(full / "checkpoints" / "step-00000030"), weights(part / "checkpoints" / "step-00000030")):
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    steps = [json.loads(line)["step"] for line in (part / "stats.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]


def test_existing_run_needs_resume_and_a_matching_config(tiny_preset, tmp_path):
    run = train(tiny_cfg(tiny_preset), tmp_path / "run", progress=False, log=lambda s: None)
    with pytest.raises(BenchError, match="--resume"):
        train(tiny_cfg(tiny_preset), run, progress=False, log=lambda s: None)
    with pytest.raises(BenchError, match="different run"):
        train(tiny_cfg(tiny_preset, model__lr="0.5"), run, resume=True, progress=False, log=lambda s: None)
    logs = []
    train(tiny_cfg(tiny_preset), run, resume=True, progress=False, log=logs.append)
    assert "already trained" in logs[-1]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_checkpoint(tiny_preset, tmp_path):
    # a checkpoint after every step: the first step leaves finite (huge) weights, the next loss overflows
    cfg = tiny_cfg(tiny_preset, model__lr="1e30", train__grad_clip="0", train__ckpt_every="1")
    with pytest.raises(DivergenceError, match=r"diverged at step \d+: the model loss is") as err:
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    ckpts = list_checkpoints(tmp_path / "run")
    assert ckpts, "the run must have saved a checkpoint before it diverged"
    assert f"the last good checkpoint is {ckpts[-1].name}" in str(err.value)
    for ckpt in ckpts:
        for t in [*weights(ckpt)[0].values(), *weights(ckpt)[1].values()]:
            assert torch.isfinite(t).all(), "a checkpoint holds non-finite weights"


def test_weights_made_non_finite_by_a_finite_loss_are_never_saved(tiny_preset, tmp_path, monkeypatch):
    """An update that overflows (simulated: the third iteration's hook writes an inf into one weight,
    after a finite loss) is caught by the check before the save: the run stops, naming the step and
    the weight, and the latest checkpoint is the last finite one."""
    import bench.runs.train

    hook = bench.runs.train.after_optimizer_step

    def overflow(method, step):
        if step == 2:
            with torch.no_grad():
                next(method.parameters()).view(-1)[0] = float("inf")
        return hook(method, step)

    monkeypatch.setattr(bench.runs.train, "after_optimizer_step", overflow)
    cfg = tiny_cfg(tiny_preset, train__ckpt_every="1")
    with pytest.raises(DivergenceError, match=r"diverged at step 3: the weights \(.*\) are no longer finite") as err:
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert "the last good checkpoint is step-00000002" in str(err.value)
    assert [c.name for c in list_checkpoints(tmp_path / "run")] == ["step-00000001", "step-00000002"]


def test_log_with_tensorboard_writes_event_files_with_the_logged_losses(tiny_preset, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.conftest import invoke

    result = invoke(["train", "ddpm", "--preset", str(tiny_preset), "--out", str(tmp_path / "run"), "--no-progress",
                     "--log-with", "tensorboard"], tmp_path)
    assert result.exit_code == 0, result.output
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents.*"))
    assert events, "no tensorboard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    stats = [json.loads(line) for line in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    logged = acc.Scalars("model/loss")
    assert [e.step for e in logged] == [s["step"] for s in stats]
    assert [round(e.value, 5) for e in logged] == [round(s["model/loss"], 5) for s in stats]
    # off by default; an unknown tracker is one line before any work
    plain = invoke(["train", "ddpm", "--preset", str(tiny_preset), "--out", str(tmp_path / "plain"), "--no-progress"],
                   tmp_path)
    assert plain.exit_code == 0 and not (tmp_path / "plain" / "logs").exists()
    bad = invoke(["train", "ddpm", "--preset", str(tiny_preset), "--out", str(tmp_path / "x"), "--log-with", "wandb"],
                 tmp_path)
    assert bad.exit_code == 2 and "train.log_with must be one of: '', 'tensorboard'" in bad.output
    assert not (tmp_path / "x").exists()
