"""`bench import` / `bench export`: diffusers DDPMPipeline folders in and out, and runs given as --model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.runs.folders import load_model
from tests.conftest import files_under, invoke, one_error_line

T = 20


def tiny_pipeline(folder: Path, *, sample_size: int = 28, seed: int = 0, channels: int = 1, **scheduler) -> Path:
    """A randomly initialised DDPMPipeline saved as diffusers saves one (safetensors)."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=sample_size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8)
    sched = DDPMScheduler(**{"num_train_timesteps": T, "beta_start": 1e-4, "beta_end": 0.05, **scheduler})
    DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(folder, safe_serialization=True)
    return folder


def imported(args: list[str], tmp_path: Path) -> Path:
    result = invoke(["import", *args], tmp_path)
    assert result.exit_code == 0, result.output
    return Path(result.output.strip().splitlines()[-1].removeprefix("run: "))


def test_an_imported_pipeline_is_a_ddpm_run_with_its_network_and_schedule(shared_data, tiny_image_suite, tmp_path):
    from diffusers import UNet2DModel

    pipe = tiny_pipeline(tmp_path / "pipe")
    run = imported([str(pipe), "--dataset", "mnist", "--data-dir", str(shared_data)], tmp_path)
    assert run.parent == tmp_path / "runs" and run.name.endswith("-ddpm-mnist")
    method, cfg, meta = load_model(run)
    assert (cfg.model.T, cfg.model.beta_start, cfg.model.beta_end) == (T, 1e-4, 0.05)
    assert cfg.model.net.kind == "diffusers" and cfg.train.steps == 0 and meta["step"] == 0
    unet = UNet2DModel.from_pretrained(pipe / "unet").eval()
    x, t = torch.randn(3, 1, 28, 28), torch.tensor([0, 7, 19])
    with torch.no_grad():
        assert torch.equal(method.prediction().fn(x, t), unet(x, t).sample)
    assert torch.allclose(method.schedule.alphas_cumprod.float(),
                          __import__("diffusers").DDPMScheduler.from_pretrained(pipe / "scheduler").alphas_cumprod)
    env = json.loads((run / "env.json").read_text())
    assert env["imported_from"] == str(pipe) and len(env["imported_weights_sha256"]) == 64
    # importing the same folder again finds the run; other weights make another run
    assert imported([str(pipe), "--dataset", "mnist", "--data-dir", str(shared_data)], tmp_path) == run
    other = imported([str(tiny_pipeline(tmp_path / "pipe2", seed=1)), "--dataset", "mnist", "--data-dir",
                      str(shared_data)], tmp_path)
    assert other != run

    out = tmp_path / "cmp"
    result = invoke(["compare", "--suite", str(tiny_image_suite), "--model", f"{run},{other}", "--methods",
                     "ddim,dpmpp-2m,euler", "--steps", "2", "--out", str(out), "--no-progress", "--data-dir",
                     str(shared_data)], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    rows = df[df["sampler"] != "data"]
    assert len(rows) == 6 and set(rows["model"]) == {run.name, other.name}
    assert (rows["checkpoint_step"] == 0).all() and (rows["nfe_measured"] == 2).all()
    assert "ddim-2@" + run.name in set(rows["label"])
    a = np.load(out / "samples" / f"ddim-2_{run.name}.npz")["samples"]
    b = np.load(out / "samples" / f"ddim-2_{other.name}.npz")["samples"]
    assert a.shape == (6, 1, 28, 28) and not np.array_equal(a, b)  # two models, two sets of samples


def test_export_then_import_gives_the_same_samples_and_diffusers_samples_the_export(
        shared_data, tiny_image_suite, tmp_path):
    from diffusers import DDPMPipeline

    import methods
    from bench.config.run import resolve_run_config
    from bench.runs.train import train

    cfg = resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config,
                             preset=str(tiny_image_suite.parent / "tiny_image_preset.toml"),
                             sets={"data.root": str(shared_data), "train.steps": "2"})
    run = train(cfg, tmp_path / "runs" / "trained", progress=False, log=lambda s: None)
    result = invoke(["export", str(run), str(tmp_path / "exported")], tmp_path)
    assert result.exit_code == 0, result.output
    pipe = DDPMPipeline.from_pretrained(tmp_path / "exported")
    assert pipe.scheduler.config.num_train_timesteps == cfg.model.T and not pipe.scheduler.config.clip_sample
    images = pipe(batch_size=2, num_inference_steps=cfg.model.T, generator=torch.Generator().manual_seed(0),
                  output_type="np").images
    assert images.shape == (2, 28, 28, 1) and np.isfinite(images).all()

    back = imported([str(tmp_path / "exported"), "--dataset", "mnist", "--data-dir", str(shared_data)], tmp_path)
    out = tmp_path / "cmp"
    result = invoke(["compare", "--suite", str(tiny_image_suite), "--model", f"{run},{back}", "--methods",
                     "ddim,ddpm", "--steps", f"2,{cfg.model.T}", "--out", str(out), "--no-progress",
                     "--data-dir", str(shared_data)], tmp_path)
    assert result.exit_code == 0, result.output
    for label in ("ddim-2", f"ddpm-{cfg.model.T}"):
        a = np.load(out / "samples" / f"{label}_{run.name}.npz")["samples"]
        b = np.load(out / "samples" / f"{label}_{back.name}.npz")["samples"]
        assert np.array_equal(a, b), label
    df = pd.read_csv(out / "results.csv").set_index("label")
    assert df.loc[f"ddim-2@{run.name}", "checkpoint_step"] == 2 and df.loc[f"ddim-2@{back.name}", "checkpoint_step"] == 0


@pytest.mark.parametrize("scheduler,message", [
    ({"beta_schedule": "squaredcos_cap_v2"}, "beta_schedule='squaredcos_cap_v2': only linear betas"),
    ({"prediction_type": "v_prediction"}, "prediction_type='v_prediction': only eps-prediction"),
    ({"variance_type": "learned_range"}, "learned variances are not represented"),
    ({"trained_betas": [0.01] * T}, "trained_betas: only linear betas"),
    ({"rescale_betas_zero_snr": True}, "zero-terminal-SNR rescaling is not represented"),
])
def test_import_refuses_a_schedule_it_cannot_represent(shared_data, tmp_path, scheduler, message):
    pipe = tiny_pipeline(tmp_path / "pipe", **scheduler)
    line = one_error_line(invoke(["import", str(pipe), "--dataset", "mnist", "--data-dir", str(shared_data)], tmp_path))
    assert message in line
    assert not (tmp_path / "runs").exists() or not files_under(tmp_path / "runs")


def test_import_and_export_refuse_bad_input_in_one_line(shared_data, tmp_path):
    pipe = tiny_pipeline(tmp_path / "pipe")
    data = ["--data-dir", str(shared_data)]
    cases = [
        (["import", str(pipe), "--dataset", "gaussians25"], "gaussians25 is not an image dataset"),
        (["import", str(pipe), "--dataset", "cifar10", "--data-dir", str(tmp_path)], "cifar10"),
        (["import", str(tmp_path / "missing"), "--dataset", "mnist", *data], "does not exist"),
        (["import", str(pipe / "model_index.json"), "--dataset", "mnist", *data], "is a file"),
        (["import", str(tmp_path), "--dataset", "mnist", *data], "has no diffusion_pytorch_model.safetensors"),
        (["export", str(tmp_path / "nope"), str(tmp_path / "x")], "is not a training run"),
    ]
    for args, message in cases:
        assert message in one_error_line(invoke(args, tmp_path)), args
    # weights only as a pickle (.bin): refused, never unpickled
    (pipe / "unet" / "diffusion_pytorch_model.safetensors").rename(pipe / "unet" / "diffusion_pytorch_model.bin")
    line = one_error_line(invoke(["import", str(pipe), "--dataset", "mnist", *data], tmp_path))
    assert "only safetensors are read" in line and "diffusion_pytorch_model.bin" in line
    rgb = tiny_pipeline(tmp_path / "rgb", channels=3)
    line = one_error_line(invoke(["import", str(rgb), "--dataset", "mnist", *data], tmp_path))
    assert "maps 3 to 3 channels, the data has 1" in line
    assert not (tmp_path / "runs").exists() or not files_under(tmp_path / "runs")


def test_export_refuses_runs_diffusers_cannot_sample(tiny_suite, tmp_path):
    import methods
    from bench.config.run import resolve_run_config
    from bench.runs.train import train

    cfg = resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config,
                             preset=str(tiny_suite.parent / "tiny_preset.toml"), sets={"train.steps": "2"})
    run = train(cfg, tmp_path / "toy", progress=False, log=lambda s: None)
    line = one_error_line(invoke(["export", str(run), str(tmp_path / "x")], tmp_path))
    assert "DDPMPipeline needs a UNet2DModel" in line and not (tmp_path / "x").exists()


def test_a_run_folder_as_model_is_checked_before_any_work(shared_data, tiny_image_suite, tmp_path):
    run = imported([str(tiny_pipeline(tmp_path / "pipe")), "--dataset", "mnist", "--data-dir", str(shared_data)],
                   tmp_path)
    base = ["compare", "--suite", str(tiny_image_suite), "--out", str(tmp_path / "o"), "--data-dir", str(shared_data)]
    for args, message in [
        (["--model", str(tmp_path / "nowhere/run")], "not a run folder (no config.json) and not a model name"),
        (["--model", str(run), "--dataset", "fashion-mnist"], "was trained on mnist, not fashion-mnist"),
        (["--model", str(run), "--seeds", "0,1"], "cannot follow a seeds axis"),
    ]:
        assert message in one_error_line(invoke(base + args, tmp_path)), args
    assert not (tmp_path / "o").exists()
    # without --dataset, the run names it (this suite names none)
    no_dataset = tmp_path / "no_dataset.toml"
    no_dataset.write_text(tiny_image_suite.read_text().replace('dataset = "mnist"', ""))
    result = invoke(["compare", "--suite", str(no_dataset), "--model", str(run), "--out", str(tmp_path / "d"),
                     "--no-progress", "--data-dir", str(shared_data)], tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "spec.json").read_text())["dataset"] == "mnist"
