"""Latent space: the autoencoder stage, its scaling factor, latent runs, decoding before metrics,
decoder timing and NFE, a changed autoencoder, and resume of both kinds of run."""

from __future__ import annotations

import json
import shutil
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import methods
from bench.config.run import resolve_run_config
from bench.config.values import build
from bench.data.latent import LatentData
from bench.errors import BenchError
from bench.measure.latent import DecodedSampler
from bench.measure.timing import count_calls, time_sampler
from bench.config.spec import TimingSpec
from bench.results.schema import COLUMNS
from bench.runs.checkpoint import load_weights, save_checkpoint
from bench.config.run import latest_checkpoint
from bench.runs.stage import Stage, load_stage, measure_scale
from bench.runs.train import train
from tests.conftest import invoke, native_sampler, one_error_line, tiny_model_config

TINY_AE = {"channels": [8, 16, 16], "norm_groups": 8, "pad": 2, "lr": 1e-3}

LATENT_PRESET = """
description = "tests: a tiny autoencoder and a tiny DDPM on MNIST"
[data]
name = "mnist"
[train]
steps = 4
batch_size = 8
log_every = 2
ckpt_every = 2
keep_checkpoints = 10
preview_samples = 0
[ddpm.model]
T = 20
[ddpm.model.net]
channels = [16, 32]
layers_per_block = 1
attn_levels = []
[autoencoder.model]
channels = [8, 16, 16]
norm_groups = 8
pad = 2
lr = 1e-3
"""


def autoencoder(shape=(1, 28, 28), **over) -> methods.Model:
    cls = methods.get_model("autoencoder")
    return cls(build(cls.Config, {**TINY_AE, **over}, "model."), shape)


@pytest.fixture
def latent_preset(tmp_path: Path) -> Path:
    path = tmp_path / "latent_preset.toml"
    path.write_text(textwrap.dedent(LATENT_PRESET))
    return path


def cfg_of(method: str, preset: Path, root: Path, **sets):
    cls = methods.get_model(method)
    return resolve_run_config(method, model_cls=cls.Config, preset=str(preset),
                              sets={"data.root": str(root), **{k.replace("__", "."): v for k, v in sets.items()}})


def quiet(_: str) -> None:
    pass


# --- the stage itself ------------------------------------------------------------------------------------

def test_autoencoder_shapes_padding_and_a_round_trip_that_learns():
    ae = autoencoder()
    assert ae.latent_shape == (4, 8, 8)  # 28 px + 2 x 2 background = 32, halved twice
    coarse = torch.rand(8, 1, 7, 7, generator=torch.Generator().manual_seed(0))  # images a 4 x 8 x 8 latent can hold
    x = torch.nn.functional.interpolate(coarse, size=28, mode="bilinear") * 2 - 1
    post = ae.encode(x)
    assert post.mean.shape == (8, 4, 8, 8) and ae.decode(post.mean).shape == x.shape
    assert ae.reconstruct(x, torch.Generator().manual_seed(1)).shape == x.shape
    groups = ae.param_groups()
    assert set(groups) == set(ae.phases_for(ae.cfg)) == {"model"}  # no discriminator without adv_weight
    opt = torch.optim.Adam(groups["model"].params, lr=3e-3)
    first = None
    for step in range(80):
        loss = ae(x, phase="model", step=step)["loss"]
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float((ae.decode(ae.encode(x).mean) - x).abs().mean())
    assert after < 0.5 * first, f"reconstruction error {first:.3f} -> {after:.3f}: the round trip did not learn"


def test_autoencoder_adversarial_phase_and_bad_configs():
    ae = autoencoder(adv_weight=0.5, adv_start=2)
    assert ae.phases_for(ae.cfg) == ("model", "disc") and set(ae.param_groups()) == {"model", "disc"}
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    assert "g_adv" not in ae(x, phase="model", step=0) and "g_adv" in ae(x, phase="model", step=2)
    assert float(ae(x, phase="disc", step=0)["loss"].detach()) == 0.0  # before adv_start
    assert torch.isfinite(ae(x, phase="disc", step=2)["loss"])
    with pytest.raises(ValueError, match="must be divisible by 4; set model.pad"):
        autoencoder(pad=0, channels=[8, 16, 16], shape=(1, 30, 30))
    with pytest.raises(ValueError, match="needs image data"):
        autoencoder(shape=(2,))
    cls = methods.get_model("autoencoder")
    with pytest.raises(ValueError, match="divisible by model.norm_groups"):
        cls.check_config(build(cls.Config, {"channels": [8, 12], "norm_groups": 8}, "model."))
    assert not cls.samplable and methods.samplers_for("autoencoder") == []


# --- scaling factor, latent data, decoding --------------------------------------------------------------

@pytest.fixture
def trained_pair(latent_preset, shared_data, tmp_path):
    """A trained tiny autoencoder and a DDPM trained in its latent space (data.latent = autoencoder)."""
    runs = tmp_path / "runs"
    cfg = cfg_of("ddpm", latent_preset, shared_data, data__latent="autoencoder")
    from bench.config.run import run_dir_for

    run_dir = train(cfg, run_dir_for(cfg, runs), progress=False, log=quiet, runs_dir=runs)
    return run_dir_for(cfg.parent("autoencoder"), runs), run_dir, cfg


def test_latent_run_records_its_autoencoder_and_the_scaling_factor_is_applied_symmetrically(trained_pair,
                                                                                           monkeypatch):
    ae_dir, run_dir, cfg = trained_pair
    assert run_dir.name.endswith("-ddpm-mnist-latent") and ae_dir.name.endswith("-autoencoder-mnist")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["parents"]["autoencoder"]["method"] == "autoencoder"
    assert cfg.semantic_dict()["parents.autoencoder"] == ae_dir.name.split("-")[0]  # the id names the autoencoder
    recorded = json.loads((ae_dir / "latent.json").read_text())
    stage_file = json.loads((run_dir / "autoencoder.json").read_text())
    assert stage_file["scaling_factor"] == recorded["scaling_factor"] and stage_file["latent_shape"] == [4, 8, 8]

    from bench.data.load import load_dataset

    pixels = load_dataset(cfg.data)
    ae = methods.get_model("autoencoder")
    from bench.runs.folders import load_model

    model, _, _ = load_model(ae_dir)
    assert recorded["scaling_factor"] == pytest.approx(measure_scale(model, pixels))
    monkeypatch.setattr("bench.runs.stage.measure_scale", lambda *a, **k: pytest.fail("the recorded factor is reused"))
    stage = load_stage(ae_dir, pixels)
    assert isinstance(model, ae) and stage.scale == recorded["scaling_factor"]
    data = LatentData(pixels, stage)
    z = data.batch(torch.arange(2000))
    assert z.shape == (2000, 4, 8, 8) and 0.85 < float(z.std()) < 1.15, "scaled latents have unit variance"
    x = pixels.eval_batch(16)
    with torch.no_grad():
        direct = model.decode(model.encode(x).mean)
    assert torch.allclose(stage.decode(stage.encode(x, mean=True)), direct, atol=1e-5), "s in, 1/s out"
    assert data.to_data(stage.encode(x, mean=True)).dtype == torch.uint8  # decoded to images


def test_latent_compare_decodes_before_metrics_times_the_decoder_and_has_both_floors(
        trained_pair, latent_preset, shared_data, fid_weights, tmp_path):
    suite = tmp_path / "latent_suite.toml"
    suite.write_text(textwrap.dedent(f"""
        description = "tests: pixel and latent DDIM"
        dataset = "mnist"
        preset = "{latent_preset}"
        methods = ["ddim"]
        num_samples = 6
        sample_batch = 6
        [steps]
        ddim = [2]
        [variants.ddim-latent]
        method = "ddim"
        steps = [2]
        set = {{ "data.latent" = "autoencoder" }}
        [metrics]
        precision_recall = "inception"
        classifier = false
        kid_subset_size = 6
        [timing]
        batch = 4
        warmup = 1
        repeats = 3
    """))
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(suite), "--out", str(out), "--no-progress", "--data-dir",
                     str(shared_data), "--fid-weights", str(fid_weights), "--runs-dir", str(tmp_path / "runs")],
                    tmp_path)
    assert result.exit_code == 0, result.output
    raw = pd.read_csv(out / "results.csv")
    assert list(raw.columns) == COLUMNS
    df = raw.set_index("label")
    assert set(df.index) == {"data (floor)", "reconstructions (floor)", "ddim-2", "ddim-latent-2"}
    ae_name = trained_pair[0].name
    floor = df.loc["reconstructions (floor)"]
    assert floor["model"] == ae_name and floor["latent"] == ae_name and np.isfinite(floor["fid"])
    latent, pixel = df.loc["ddim-latent-2"], df.loc["ddim-2"]
    assert latent["model"] == "ddpm-latent" and latent["latent"] == ae_name and pixel["model"] == "ddpm"
    assert pd.isna(pixel["latent"]) and pd.isna(pixel["decode_ms_per_100"])
    assert latent["nfe_measured"] == 2, "NFE counts the denoiser, never the decoder"
    assert 0 < latent["decode_ms_per_100"] < latent["sample_ms_per_100"], "the sampler's time includes decoding"
    assert np.isfinite(latent["fid"]) and latent["latent_scale"] > 0
    x = np.load(out / "samples" / "ddim-latent-2.npz")["samples"]
    assert x.dtype == np.uint8 and x.shape == (6, 1, 28, 28), "samples are decoded images"
    report = (out / "report.md").read_text()
    for text in ("reconstructions (floor)", "of which decoder", "**ddim-latent-2** vs **ddim-2** in pixel space: FID",
                 "At equal sampling time", "shared by 1 latent model"):
        assert text in report, text


def test_the_decoder_is_timed_and_never_counted_as_an_nfe():
    model = methods.get_model("ddpm")(tiny_model_config("ddpm", (4, 8, 8)), (4, 8, 8)).eval()
    inner = native_sampler(model, 3, sampler="ddim")

    class SlowDecoder(torch.nn.Module):
        def forward(self, z):
            time.sleep(0.03)
            return z[:, :1]

    slow = SlowDecoder()
    stage = Stage(ae=None, scale=2.0, run_dir=Path("ae"), weights="w", run_id="id")
    stage.decode = lambda z: slow(z / 2.0)  # a stand-in for D(z / s)
    decoded = DecodedSampler(inner, stage)
    assert decoded.nfe == inner.nfe == 3 and decoded.label == inner.label
    noise = torch.randn(4, 4, 8, 8)
    with count_calls(model.denoisers() + [slow]) as counter:
        x = decoded(noise, generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and counter["per_module"] == [3, 1]
    spec = TimingSpec(batch=4, warmup=1, repeats=3)
    with_decoder = time_sampler(decoded, model.denoisers(), (4, 8, 8), torch.device("cpu"), spec)
    alone = time_sampler(inner, model.denoisers(), (4, 8, 8), torch.device("cpu"), spec)
    assert with_decoder.sample_ms >= alone.sample_ms + 25


def test_a_changed_autoencoder_is_refused_in_one_line(trained_pair, tmp_path):
    ae_dir, run_dir, cfg = trained_pair
    ckpt = latest_checkpoint(ae_dir)
    model, ema, meta = load_weights(ckpt)
    nudged = {k: v + 0.01 if v.is_floating_point() else v for k, v in ema.items()}
    save_checkpoint(ae_dir, int(meta["step"]) + 1, model=model, ema=nudged, state=torch.load(ckpt / "state.pt"),
                    meta={k: meta[k] for k in ("method", "dataset", "data_shape", "run_id")}, keep=10)
    line = one_error_line(invoke(["sample", str(run_dir), "--method", "ddim", "--steps", "2", "--num", "2",
                                  "--out", str(tmp_path / "s.npz")], tmp_path))
    assert "changed since" in line and ae_dir.name in line and not (tmp_path / "s.npz").exists()
    with pytest.raises(BenchError, match="changed since"):
        train(cfg, run_dir, resume=True, progress=False, log=quiet, runs_dir=run_dir.parent)


@pytest.mark.parametrize("latent", [False, True], ids=["autoencoder", "latent-ddpm"])
def test_resume_after_a_stop_matches_the_uninterrupted_run(latent, latent_preset, shared_data, tmp_path):
    runs = tmp_path / "runs"
    cfg = cfg_of("ddpm", latent_preset, shared_data, data__latent="autoencoder") if latent else \
        cfg_of("autoencoder", latent_preset, shared_data)
    full = train(cfg, tmp_path / "full", progress=False, log=quiet, runs_dir=runs)
    part = tmp_path / "part"  # what a run killed after its step-2 checkpoint has on disk
    (part / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "env.json", "stats.jsonl") + (("autoencoder.json",) if latent else ()):
        shutil.copy(full / name, part / name)
    shutil.copytree(full / "checkpoints" / "step-00000002", part / "checkpoints" / "step-00000002")
    train(cfg, part, resume=True, progress=False, log=quiet, runs_dir=runs)
    for kind in ("model", "ema"):
        a, b = (load_file(d / "checkpoints" / "step-00000004" / f"{kind}.safetensors") for d in (full, part))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"{kind} differs after resume"


# --- the command line ------------------------------------------------------------------------------------

def test_latent_bad_input_is_one_line(shared_data, tmp_path):
    cases = [
        (["train", "ddpm", "--latent", "nowhere"], "neither 'autoencoder' nor a run folder"),
        (["train", "ddpm", "--dataset", "gaussians25", "--latent", "autoencoder"], "needs image data"),
        (["train", "autoencoder", "--dataset", "mnist", "--latent", "autoencoder"], "trains in pixel space"),
        (["train", "autoencoder", "--dataset", "gaussians25"], "needs image data"),
    ]
    for args, message in cases:
        line = one_error_line(invoke([*args, "--data-dir", str(shared_data)], tmp_path))
        assert message in line, line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("suite", ["mnist-latent-cpu", "cifar10-latent"])
def test_latent_suites_pair_every_latent_row_with_a_pixel_row(suite):
    from bench.config.requests import CompareRequest
    from bench.config.resolve import resolve_compare_spec

    spec = resolve_compare_spec(CompareRequest(suite=suite))
    latent = [c for c in spec.cells if dict(c.overrides).get("data.latent") == "autoencoder"]
    pixel = [c for c in spec.cells if c not in latent]
    assert latent and {(c.sampler, c.nfe_target) for c in latent} == {(c.sampler, c.nfe_target) for c in pixel}
    for c in latent:
        cfg = spec.run_config(c)
        assert cfg.parent("autoencoder").model_name == "autoencoder" and not cfg.parent("autoencoder").data.latent
        assert dict(c.sampler_options).get("clip_sample") is not True, "scaled latents have no [-1, 1] range to clip to"


def test_sigkill_in_the_autoencoder_then_in_the_latent_run_resumes_both_exactly(shared_data, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.test_faults import REPO, assert_same_weights, wait_for

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    preset = tmp_path / "longer.toml"  # a parent takes the preset's training section, never the child's flags
    preset.write_text(textwrap.dedent(LATENT_PRESET).replace("steps = 4", "steps = 300").replace("ckpt_every = 2",
                                                                                              "ckpt_every = 50"))
    args = ["train", "ddpm", "--preset", str(preset), "--latent", "autoencoder", "--data-dir", str(shared_data),
            "--no-progress"]

    def cmd(runs: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "bench", *args, "--runs-dir", str(runs), *extra]

    ref = subprocess.run(cmd(tmp_path / "ref"), cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert ref.returncode == 0, ref.stderr
    victim = tmp_path / "victim"
    for target, extra in (("autoencoder", ()), ("ddpm", ("--resume",))):
        proc = subprocess.Popen(cmd(victim, *extra), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env)
        wait_for(lambda: any(victim.glob(f"*-{target}-mnist*/checkpoints/step-00000100")), proc, timeout=300)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        (killed,) = victim.glob(f"*-{target}-mnist*")
        assert latest_checkpoint(killed).name < "step-00000300", "the kill must land before the end of training"
        if target == "autoencoder":  # the next command finds the parent unfinished and resumes it first
            assert not any(victim.glob("*-ddpm-mnist-latent/checkpoints"))
    done = subprocess.run(cmd(victim, "--resume"), cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    for pattern in ("*-autoencoder-mnist", "*-ddpm-mnist-latent"):
        (a,), (b,) = list((tmp_path / "ref").glob(pattern)), list(victim.glob(pattern))
        assert latest_checkpoint(b).name == "step-00000300"
        assert_same_weights(a, b)


def dotted(table: dict, prefix: str) -> dict:
    out = {}
    for k, v in table.items():
        out.update(dotted(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("method", ["ddgan", "vdm", "flow", "cm"])
def test_every_other_model_trains_and_samples_in_the_same_latent_space(method, trained_pair, latent_preset,
                                                                       shared_data, tmp_path):
    from bench.config.run import run_dir_for
    from tests.conftest import TINY_IMAGE_MODEL

    ae_dir, _, _ = trained_pair
    runs = ae_dir.parent
    cfg = cfg_of(method, latent_preset, shared_data, data__latent=str(ae_dir), train__steps=2,
                 **{k.replace(".", "__"): v for k, v in dotted(TINY_IMAGE_MODEL[method], "model.").items()})
    assert cfg.parent("autoencoder").model_name == "autoencoder"
    run_dir = train(cfg, run_dir_for(cfg, runs), progress=False, log=quiet, runs_dir=runs)
    assert json.loads((run_dir / "autoencoder.json").read_text())["latent_shape"] == [4, 8, 8]
    out = tmp_path / "s.npz"
    result = invoke(["sample", str(run_dir), "--num", "3", "--out", str(out)], tmp_path)
    assert result.exit_code == 0, result.output
    images = np.load(out)["samples"]
    assert images.shape == (3, 1, 28, 28) and images.dtype == np.uint8, "decoded to MNIST pixels"
