"""VDM: the learned schedule, the bound, the any-step sampler, and its wiring into training and comparisons."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import shutil
import textwrap

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import methods
from bench.config.run import resolve_run_config
from bench.measure.timing import count_calls
from bench.metrics.likelihood import bits_per_dim
from bench.runs.train import train
from methods.prediction import ContinuousSchedule, Prediction
from methods.samplers.vdm import vdm_sample
from methods.schedules import GAMMA_SCHEDULES, build_gamma, gaussian_eps_vp
from methods.vdm import VDM, VDMConfig
from tests.conftest import (
    IMAGE_SHAPE,
    VECTOR_SHAPE,
    invoke,
    native_sampler,
    one_error_line,
    tiny_model_config,
)

MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 0.2])


def tiny(shape=VECTOR_SHAPE, **overrides) -> VDM:
    return VDM(dataclasses.replace(tiny_model_config("vdm", shape), **overrides), shape)


def uniform_images(n: int, seed: int = 0) -> torch.Tensor:
    """8-bit uniform noise in model space: x = 2 k / 255 - 1."""
    k = torch.randint(0, 256, (n, *IMAGE_SHAPE), generator=torch.Generator().manual_seed(seed))
    return k.float() * 2 / 255 - 1


# --- the noise schedule ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", GAMMA_SCHEDULES)
def test_schedules_start_at_the_configured_endpoints(kind):
    gamma = build_gamma(kind, -10.0, 7.0)
    g0, g1 = gamma(torch.tensor([0.0, 1.0])).tolist()
    if kind == "learned_nnet":  # the learned part starts at N(0, 0.01^2) weights / 1024: tiny, not zero
        assert g0 == pytest.approx(-10.0, abs=1e-2) and g1 == pytest.approx(7.0, abs=1e-2)
    else:
        assert (g0, g1) == (-10.0, 7.0)


def test_fixed_schedule_endpoints_follow_the_config():
    m = tiny(schedule="fixed_linear", gamma_min=-9.5, gamma_max=6.5)
    assert m.gamma(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-9.5, -1.5, 6.5]
    assert list(m.gamma.parameters()) == [], "the fixed schedule must not be trained"


@pytest.mark.parametrize("kind", ["learned_linear", "learned_nnet"])
def test_learned_gamma_stays_strictly_monotone_after_optimiser_steps(kind):
    m = tiny(schedule=kind)
    before = [p.detach().clone() for p in m.gamma.parameters()]
    opt = torch.optim.AdamW(m.param_groups()["model"].params, lr=0.05, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    for step in range(25):
        x = 3 * torch.randn(64, 2, generator=gen)
        loss = m(x, phase="model", step=step)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, m.gamma.parameters())), "gamma was not trained"
    with torch.no_grad():
        g = m.gamma(torch.linspace(0, 1, 2001))
    assert torch.isfinite(g).all() and (g.diff() > 0).all(), "gamma(t) is not strictly increasing"


# --- the bound --------------------------------------------------------------------------------------

def test_discrete_time_loss_approaches_the_continuous_loss_as_T_grows():
    """On one model and one batch (same t, same noise), 0.5 T expm1(gamma_t - gamma_s) -> 0.5 gamma'(t)."""
    base = tiny(schedule="learned_nnet")
    with torch.no_grad():  # make gamma visibly non-linear, so gamma' varies with t
        base.gamma.l2.weight.mul_(300)
        base.gamma.l3.weight.mul_(300)
    gen = torch.Generator().manual_seed(0)
    x, t, eps = 2 * torch.randn(512, 2, generator=gen), torch.rand(512, generator=gen), torch.randn(512, 2, generator=gen)
    with torch.no_grad():
        continuous = base.diffusion_loss(x, t, eps).mean()
        errors = []
        for T in (10, 100, 1000, 10000):
            m = tiny(schedule="learned_nnet", loss_T=T)
            m.load_state_dict(base.state_dict())
            errors.append(abs(m.diffusion_loss(x, t, eps).mean() / continuous - 1).item())
    assert all(fine < coarse / 5 for coarse, fine in zip(errors, errors[1:])), f"relative errors {errors}"
    assert errors[-1] < 3e-3, f"relative errors {errors}"


def test_bpd_with_a_zero_denoiser_equals_its_closed_form():
    """eps_hat = 0 on a fixed linear schedule: E[diffusion] = 0.5 (gamma_max - gamma_min) nats per dim,
    the 8-bit decoder is exact to ~1e-8 (levels sit 6 sigma_0 apart) and the prior KL is known."""
    m = tiny(IMAGE_SHAPE, schedule="fixed_linear", loss_T=0).eval()
    m.eps_model = lambda z, g: torch.zeros_like(z)
    bpd = m.bpd(uniform_images(256), generator=torch.Generator().manual_seed(1)).double()
    levels, g1 = torch.linspace(-1, 1, 256, dtype=torch.float64), torch.tensor(5.0, dtype=torch.float64)
    prior = 0.5 * (torch.sigmoid(-g1) * (levels**2).mean() + torch.sigmoid(g1) - torch.log(torch.sigmoid(g1)) - 1)
    expected = (0.5 * 18.3 + prior.item()) / math.log(2)
    assert bpd.mean().item() == pytest.approx(expected, abs=4 * bpd.std().item() / 16)


def test_bpd_of_uniform_noise_is_finite_and_at_least_8_bits():
    """Uniform 8-bit noise has entropy 8 bits/dim; any model's bound on its cross-entropy is >= 8 (Gibbs)."""
    m = tiny(IMAGE_SHAPE).eval()
    bpd = m.bpd(uniform_images(256), generator=torch.Generator().manual_seed(1))
    assert bpd.shape == (256,) and torch.isfinite(bpd).all()
    assert bpd.mean().item() > 8.0 - 3 * bpd.std().item() / 16
    assert tiny().bpd(torch.randn(8, 2), generator=torch.Generator()) is None, "2-D data has no bits/dim"


def test_bpd_is_deterministic_given_the_generator_and_leaves_the_global_rng_alone():
    m = tiny(IMAGE_SHAPE).eval()
    x = uniform_images(8)
    state = torch.get_rng_state()
    a = m.bpd(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, m.bpd(x, generator=torch.Generator().manual_seed(3)))
    assert not torch.equal(a, m.bpd(x, generator=torch.Generator().manual_seed(4)))


# --- the sampler ------------------------------------------------------------------------------------

def exact_prediction() -> Prediction:
    """The exact E[eps | z_t] of Gaussian data on the fixed linear gamma, as a continuous-time model."""
    gamma = build_gamma("fixed_linear", -13.3, 5.0)
    return Prediction(lambda z, t: gaussian_eps_vp(z, gamma(t), MU, STD), "eps", ContinuousSchedule(gamma, {}))


def test_sampler_with_the_exact_gaussian_denoiser_reproduces_the_data_moments():
    gamma = build_gamma("fixed_linear", -13.3, 5.0)
    noise = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0))
    z_0 = vdm_sample(exact_prediction(), noise, steps=1000, generator=torch.Generator().manual_seed(1))
    x = z_0 / torch.sigmoid(-gamma(torch.tensor(0.0))).sqrt()
    assert torch.allclose(x.mean(0), MU, atol=0.02), f"mean {x.mean(0)} != {MU}"
    assert torch.allclose(x.std(0) / STD, torch.ones(2), atol=0.03), f"std {x.std(0)} != {STD}"


def test_sampler_draws_only_from_its_generator():
    noise = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    run = functools.partial(vdm_sample, exact_prediction(), noise, steps=20)
    a = run(generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(a, run(generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, run(generator=torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("steps", [1, 7, 64])
def test_measured_nfe_equals_steps(steps):
    m = tiny().eval()
    sampler = native_sampler(m, steps)
    with count_calls(m.denoisers()) as counter:
        x = sampler(torch.randn(16, 2), generator=torch.Generator().manual_seed(0))
    assert counter["calls"] == steps == sampler.nfe and x.shape == (16, 2)


def test_image_samples_are_on_the_8_bit_grid():
    m = tiny(IMAGE_SHAPE).eval()
    x = native_sampler(m, 3)(torch.randn(2, *IMAGE_SHAPE), generator=torch.Generator().manual_seed(0))
    k = (x + 1) * 255 / 2
    assert torch.allclose(k, k.round(), atol=1e-4) and x.min() >= -1 and x.max() <= 1


def test_bad_configs_and_steps_are_rejected():
    with pytest.raises(ValueError, match="unknown schedule 'cosine'; choose from: fixed_linear"):
        VDM.check_config(VDMConfig(schedule="cosine"))
    with pytest.raises(ValueError, match="gamma_min"):
        VDM.check_config(VDMConfig(gamma_min=5.0, gamma_max=-5.0))
    with pytest.raises(ValueError, match="steps=0 is not valid: use 1..100000"):
        native_sampler(tiny(), 0)


# --- wiring: training, comparisons, CLI ---------------------------------------------------------------

def vdm_cfg(preset, **sets):
    return resolve_run_config("vdm", model_cls=VDMConfig, preset=str(preset), sets=sets)


def test_training_logs_held_out_bound_and_resumes_exactly(tiny_preset, tmp_path):
    sets = {"train.eval_every": "10", "train.eval_samples": "100", "train.lr_schedule": "cosine"}
    full = train(vdm_cfg(tiny_preset, **sets), tmp_path / "full", progress=False, log=lambda s: None)
    stats = [json.loads(line) for line in (full / "stats.jsonl").read_text().splitlines()]
    assert [s["step"] for s in stats] == [10, 20, 30]
    assert all(math.isfinite(s["eval/vlb"]) and math.isfinite(s["model/loss"]) for s in stats)
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "env.json", "stats.jsonl"):
        shutil.copy(full / name, part / name)
    shutil.copytree(full / "checkpoints" / "step-00000010", part / "checkpoints" / "step-00000010")
    train(vdm_cfg(tiny_preset, **sets), part, resume=True, progress=False, log=lambda s: None)
    for name in ("model.safetensors", "ema.safetensors"):
        a, b = (load_file(run / "checkpoints" / "step-00000030" / name) for run in (full, part))
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs after resume"
    resumed = [json.loads(line) for line in (part / "stats.jsonl").read_text().splitlines()]
    assert [s["eval/vlb"] for s in resumed] == [s["eval/vlb"] for s in stats], "evaluation is not deterministic"


class FakeImages:
    shape = IMAGE_SHAPE

    def eval_batch(self, n: int) -> torch.Tensor:
        return uniform_images(min(n, 150))


def test_runner_bpd_for_vdm_and_a_note_for_methods_without_a_likelihood():
    vdm = tiny(IMAGE_SHAPE).eval()
    metrics, notes = bits_per_dim(vdm, FakeImages(), name="vdm", num_images=1000, seed=0, device=torch.device("cpu"))
    assert math.isfinite(metrics["bpd"]) and "first 150 test images" in notes[0]
    ddpm = methods.get_model("ddpm")(tiny_model_config("ddpm", IMAGE_SHAPE), IMAGE_SHAPE)
    assert bits_per_dim(ddpm, FakeImages(), name="ddpm", num_images=10, seed=0,
                        device=torch.device("cpu")) == ({}, ["bpd: ddpm defines no likelihood"])


def test_compare_saves_the_learned_schedule_and_the_report_plots_it(tiny_preset, tmp_path):
    suite = tmp_path / "suite.toml"
    suite.write_text(textwrap.dedent(f"""
        dataset = "gaussians25"
        preset = "{tiny_preset}"
        methods = ["vdm"]
        num_samples = 100
        sample_batch = 100
        [steps]
        vdm = [2, 5]
        [timing]
        batch = 10
        warmup = 1
        repeats = 3
        max_seconds = 1
    """))
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(suite), "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv")
    vdm = df[df["sampler"] == "vdm"]
    assert list(vdm["label"]) == ["vdm-2", "vdm-5"] and (vdm["nfe_measured"] == vdm["steps"]).all()
    assert vdm["bpd"].isna().all(), "bits/dim does not apply to continuous 2-D data"
    assert (out / "diagnostics" / "vdm.npz").exists() and (out / "noise_schedule.png").exists()
    assert "noise schedule: gamma(0)" in (out / "report.md").read_text()


def test_cli_rejects_T_for_vdm_in_one_line(tmp_path):
    result = invoke(["train", "vdm", "--T", "4"], tmp_path)
    assert one_error_line(result) == "error: --T does not apply to vdm: it has no discrete T (continuous time; choose steps when sampling)"
    assert not any(tmp_path.rglob("*")), "bad input must not write anything"


@pytest.mark.parametrize("gamma_0", [-13.3, -8.0, -2.0])
def test_windowed_decoder_equals_the_full_256_level_softmax(gamma_0):
    """-13.3 and -8 take the windowed path, -2 the full one; in float64 both match the plain softmax."""
    from methods.vdm import discretised_log_prob

    x = uniform_images(8).double()
    g0 = torch.tensor(gamma_0, dtype=torch.float64)
    z = x + torch.exp(0.5 * g0) * torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    levels = torch.arange(256, dtype=torch.float64) * 2 / 255 - 1
    logits = -0.5 * torch.exp(-g0) * (z.unsqueeze(-1) - levels) ** 2
    k = torch.round((x + 1) * 127.5).long().unsqueeze(-1)
    full = (logits.gather(-1, k).squeeze(-1) - torch.logsumexp(logits, -1)).flatten(1).sum(1)
    assert torch.allclose(discretised_log_prob(x, z, g0), full, rtol=1e-12, atol=1e-9)


def test_report_shows_bpd_as_a_checkpoint_column_not_a_curve(tmp_path):
    """bpd is a property of the checkpoint: one table column and one reading line, no quality-vs-NFE panel."""
    from bench.report.render import render_report
    from bench.results.schema import COLUMNS

    rows = [{"sampler": "data", "label": "data (floor)", "seed": 0, "num_samples": 10},
            *({"sampler": "vdm", "label": f"vdm-{s}", "steps": s, "nfe_measured": s, "nfe_declared": s, "bpd": 1.234,
               "sample_ms_per_100": 10.0 * s, "sample_ms_per_100_std": 1.0, "sampler_efficiency": 0.9,
               "notes": "bpd: first 100 test images"} for s in (10, 100)),
            {"sampler": "ddpm", "label": "ddpm-1000", "steps": 1000, "nfe_measured": 1000, "nfe_declared": 1000,
             "sample_ms_per_100": 900.0, "sample_ms_per_100_std": 1.0, "sampler_efficiency": 0.9,
             "notes": "bpd: ddpm defines no likelihood"}]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "spec.json").write_text(json.dumps({"name": "t", "suite": "t", "dataset": "mnist", "preset": "p",
                                                    "grid": {"timing": {}}}))
    text = render_report(tmp_path, tmp_path).read_text()
    assert "likelihood: bits/dim (test) ↓" in text and "| 1.234 |" in text
    assert "**vdm** bounds the test likelihood at 1.234 bits/dim" in text
    assert "ddpm-1000: bpd: ddpm defines no likelihood" in text
    assert "steps: ." not in text, "no empty sweep line when no per-sampler metric exists"


def test_the_prior_term_charges_data_that_is_not_unit_scale():
    """The toy data (modes at -4..4, E[x^2] = 8 per coordinate) is not rescaled: the exact prior KL
    carries the mismatch, 0.5 alpha_1^2 E[x^2] per dimension beyond the KL at x = 0 (0.027 nats at
    gamma_1 = 5), as methods/vdm.py states."""
    from methods.vdm import prior_kl

    gamma_1 = torch.tensor(5.0)
    grid = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    x = torch.cartesian_prod(grid, grid)  # the 25 modes: E[x^2] = 8 per coordinate
    extra = (prior_kl(x, gamma_1) - prior_kl(torch.zeros_like(x), gamma_1)).mean() / 2
    assert float(extra) == pytest.approx(0.5 * torch.sigmoid(-gamma_1).item() * 8.0, rel=1e-5)
    assert float(extra) == pytest.approx(0.02677, abs=1e-4)
