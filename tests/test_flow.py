"""Flow matching and rectified flow: the loss and every flow sampler against exact Gaussian data,
the mixture's exact velocity against a numerical derivative of its marginal, reflow couplings,
run dependencies (the teacher's id in the student's), bit-exact resume, and the CLI."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import methods
from bench.config.run import resolve_run_config
from bench.config.run import run_dir_for
from bench.runs.train import train
from methods.flow import Flow, FlowConfig, draw_couplings
from methods.oracle import FlowOracle, MixtureVelocity
from tests.conftest import invoke, one_error_line

MEAN, STD = 1.5, 0.5  # exact Gaussian data N(MEAN, STD^2 I)


def gaussian_oracle(dim: int = 2) -> FlowOracle:
    return FlowOracle(FlowOracle.Config(), (dim,), means=torch.full((1, dim), MEAN), std=STD)


class Scaled(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor

    def forward(self, x, t):
        return self.factor * self.inner(x, t)


def test_flow_loss_at_the_exact_velocity_is_the_conditional_variance():
    """E||u* - (eps - x_0)||^2 = E_t[(1 + s^2) - (t - a s^2)^2 / (a^2 s^2 + t^2)] per dimension for
    Gaussian data: the loss uses x_t = (1 - t) x_0 + t eps and the target eps - x_0, nothing else."""
    torch.manual_seed(0)
    flow = Flow(FlowConfig(), (2,))
    flow.net = gaussian_oracle().velocity
    x0 = MEAN + STD * torch.randn(200_000, 2)
    loss = flow(x0, phase="model", step=0)["loss"].item()
    t = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    a = 1 - t
    expected = ((1 + STD**2) - (t - a * STD**2) ** 2 / (a**2 * STD**2 + t**2)).mean().item()
    assert loss == pytest.approx(expected, rel=0.02)
    flow.net = Scaled(gaussian_oracle().velocity, 1.1)
    assert flow(x0, phase="model", step=0)["loss"].item() > expected * 1.03  # a wrong field costs more


@pytest.mark.parametrize("t_dist", ["uniform", "logit-normal"])
def test_training_times_lie_in_the_unit_interval(t_dist):
    flow = Flow(FlowConfig(t_dist=t_dist, logit_mean=0.5), (2,))
    t = flow.draw_t(50_000, torch.device("cpu"))
    assert 0 <= t.min() and t.max() <= 1
    assert t.mean().item() == pytest.approx(0.5 if t_dist == "uniform" else 0.6, abs=0.02)


FLOW_SAMPLERS = [s for s in methods.list_samplers() if methods.get_sampler(s).runs_on(FlowOracle) is None]
STEPS = {"dopri5": 1, "heun": 40, "midpoint": 40}  # first-order solvers get 400 steps


@pytest.mark.parametrize("name", FLOW_SAMPLERS)
def test_flow_samplers_on_exact_gaussian_data_reach_its_moments(name):
    """The exact flow of N(0, I) -> N(m, s^2 I) is x_0 = m + s z: each sample has a known target (a
    stochastic sampler, EDM's Algorithm 2 through the flow's sigma view, only the moments)."""
    cls = methods.get_sampler(name)
    steps, tol = STEPS.get(name, 400), 0.003 if cls.adaptive else 0.01
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = gaussian_oracle()
    x = cls.build(model, steps, None)(z, generator=torch.Generator().manual_seed(0))
    if not cls.stochastic:
        assert (x - (MEAN + STD * z)).abs().max().item() < tol
    assert x.mean().item() == pytest.approx(MEAN, abs=0.03) and x.std().item() == pytest.approx(STD, abs=0.02)


@pytest.mark.parametrize("name,order", [("flow", 1), ("midpoint", 2), ("heun", 2)])
def test_flow_solvers_converge_at_their_order(name, order):
    z = torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    model = FlowOracle(FlowOracle.Config(), (2,), means=torch.tensor([[2.0, 0.0], [-2.0, 0.0]]), std=0.5)
    ref = methods.get_sampler("midpoint").build(model, 2000, None)(z, generator=None)
    err = [(methods.get_sampler(name).build(model, n, None)(z, generator=None) - ref).abs().mean().item()
           for n in (20, 40)]
    rate = math.log2(err[0] / err[1])
    assert order - 0.3 < rate < order + 0.5, f"{name}: observed order {rate:.2f}"


def _log_marginal(x: torch.Tensor, t: float, means: torch.Tensor, std: float) -> torch.Tensor:
    a, v = 1 - t, (1 - t) ** 2 * std**2 + t**2
    d2 = (x[:, None, :] - a * means[None]).pow(2).sum(-1)
    return torch.logsumexp(-d2 / (2 * v), dim=1) - 0.5 * x.shape[1] * math.log(2 * math.pi * v) - math.log(len(means))


@pytest.mark.parametrize("t", [0.05, 0.3, 0.7, 0.95])
def test_mixture_velocity_matches_a_numerical_derivative_of_the_marginal(t):
    """u* = E[eps | x] - E[x_0 | x] with E[eps | x] = -t grad log p_t and E[x_0 | x] = (x - t E[eps | x]) / (1 - t)
    (Tweedie on the linear path); the score by central differences of log p_t."""
    means = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]], dtype=torch.float64)
    std = 0.4
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    h = 1e-5
    score = torch.stack([(_log_marginal(x + h * e, t, means, std) - _log_marginal(x - h * e, t, means, std)) / (2 * h)
                         for e in torch.eye(2, dtype=torch.float64)], dim=1)
    eps = -t * score
    expected = eps - (x - t * eps) / (1 - t)
    got = MixtureVelocity(means, std)(x, torch.tensor(t))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_reflow_couplings_are_deterministic_given_their_seed():
    teacher = Flow(FlowConfig(net=methods.nets.NetConfig(hidden=16, depth=1, emb_dim=8)), (2,)).eval()
    cfg = FlowConfig(couplings=250, coupling_batch=100, coupling_sampler="heun", coupling_steps=3)
    a, b, c = (draw_couplings(teacher, cfg, seed=s) for s in (0, 0, 1))
    assert a[0].shape == a[1].shape == (250, 2)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    sampler = methods.get_sampler("heun").build(teacher, 3, None)
    torch.testing.assert_close(a[1][:100], sampler(a[0][:100], generator=None))  # (z, ODE(z)) pairs


def reflow_config(tiny_preset, **sets):
    return resolve_run_config("flow", model_cls=FlowConfig, preset=str(tiny_preset),
                              sets={"model.reflow": 1, **sets})


def test_the_teachers_id_is_part_of_the_students(tiny_preset):
    student = reflow_config(tiny_preset)
    teacher = student.parent("teacher")
    assert teacher.model_name == "flow" and teacher.model.reflow == 0 and teacher.model.net == student.model.net
    assert student.semantic_dict()["parents.teacher"] == teacher.run_id()
    plain = resolve_run_config("flow", model_cls=FlowConfig, preset=str(tiny_preset))
    assert plain.parents == () and "parents.teacher" not in plain.semantic_dict()
    assert teacher.run_id() == plain.run_id(), "the teacher is the preset's own flow run"
    other = reflow_config(tiny_preset, **{"train.seed": 1})
    assert other.parent("teacher").run_id() == teacher.run_id(), "the child's flags stay the child's"


def test_reflow_trains_its_teacher_first_and_resumes_bit_exactly(tiny_preset, tmp_path):
    student = reflow_config(tiny_preset)
    runs = tmp_path / "runs"
    lines: list[str] = []
    full = train(student, run_dir_for(student, runs), progress=False, log=lines.append)
    assert any("needs its teacher" in ln for ln in lines)
    teacher_dir = run_dir_for(student.parent("teacher"), runs)
    assert (teacher_dir / "config.json").exists() and (full / "couplings.pt").exists()
    # the same run, stopped at step 10 and resumed (couplings read back from the cache)
    short = reflow_config(tiny_preset, **{"train.steps": 10})
    part = tmp_path / "again" / full.name
    (tmp_path / "again").mkdir()
    import shutil

    shutil.copytree(teacher_dir, tmp_path / "again" / teacher_dir.name)
    train(short, part, progress=False, log=lambda s: None)
    train(student, part, resume=True, progress=False, log=lambda s: None)
    from tests.test_faults import assert_same_weights

    assert_same_weights(full, part)


def test_a_plain_flow_run_resumes_bit_exactly(tiny_preset, tmp_path):
    cfg = resolve_run_config("flow", model_cls=FlowConfig, preset=str(tiny_preset), sets={"model.t_dist": "logit-normal"})
    full = train(cfg, tmp_path / "full", progress=False, log=lambda s: None)
    short = resolve_run_config("flow", model_cls=FlowConfig, preset=str(tiny_preset),
                               sets={"model.t_dist": "logit-normal", "train.steps": 20})
    train(short, tmp_path / "part", progress=False, log=lambda s: None)
    train(cfg, tmp_path / "part", resume=True, progress=False, log=lambda s: None)
    from tests.test_faults import assert_same_weights

    assert_same_weights(full, tmp_path / "part")


def test_compare_records_dopri5s_measured_nfe_and_tolerances(tmp_path):
    out = tmp_path / "out"
    result = invoke(["compare", "--methods", "dopri5,flow", "--model", "flow-oracle", "--nfe", "4",
                     "--num-samples", "200", "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    df = pd.read_csv(out / "results.csv").set_index("sampler")
    assert pd.isna(df.loc["dopri5", "nfe_declared"]) and df.loc["dopri5", "nfe_measured"] > 4
    assert '"rtol": 1e-05' in df.loc["dopri5", "sampler_settings"]
    assert df.loc["flow", "nfe_declared"] == df.loc["flow", "nfe_measured"] == 4


@pytest.mark.parametrize("args,message", [
    (["train", "flow", "--set", "model.t_dist=beta"], "unknown t_dist 'beta'"),
    (["train", "flow", "--set", "model.reflow=9"], "reflow=9 is out of range"),
    (["train", "flow", "--set", "model.coupling_sampler=ddim"], "coupling_sampler: ddim needs a model predicting eps"),
    (["train", "flow", "--set", "model.coupling_sampler=nope"], "unknown method 'nope'"),
    (["compare", "--methods", "dopri5", "--steps", "4"], "dopri5: steps=4 is not valid: use 1 (adaptive"),
    (["compare", "--methods", "midpoint", "--model", "ddpm"], "midpoint cannot run on ddpm"),
    (["compare", "--methods", "euler", "--model", "flow", "--steps", "5", "--dataset", "gaussians25"], None),
])
def test_bad_flow_input_is_one_line(args, message, tmp_path):
    if message is None:  # a valid pairing: euler runs on flows (checked without training: resolve only)
        from bench.config.requests import CompareRequest
        from bench.config.resolve import resolve_compare_spec

        spec = resolve_compare_spec(CompareRequest(samplers=["euler"], models=["flow"], steps=[5]))
        assert [c.model_name for c in spec.cells] == ["flow"]
        return
    result = invoke(args, tmp_path)
    assert message in one_error_line(result)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("swd_2rf,verdict", [(0.10, "beats"), (0.40, "does not beat")])
def test_the_report_states_whether_reflow_straightens_either_way(swd_2rf, verdict):
    """The student is compared with its own teacher (its parent run), not with another 1-rectified flow."""
    from bench.report.readings.straightening import straightening_reading

    df = pd.DataFrame([
        {"label": "flow-1", "sampler": "flow", "variant": None, "steps": 1, "nfe_measured": 1, "swd": 0.30, "modes": 25,
         "hq_fraction": 0.5},
        {"label": "flow-ff-1", "sampler": "flow", "variant": "flow-ff", "steps": 1, "nfe_measured": 1, "swd": 0.05,
         "modes": 25, "hq_fraction": 0.9},  # another network, also reflow 0: not the teacher
        {"label": "2-rf-1", "sampler": "flow", "variant": "2-rf", "steps": 1, "nfe_measured": 1, "swd": swd_2rf,
         "modes": 25, "hq_fraction": 0.8},
        {"label": "ddim-1", "sampler": "ddim", "variant": None, "steps": 1, "nfe_measured": 1, "swd": 0.9, "modes": 3,
         "hq_fraction": 0.1},
    ])
    spec = {"cells": [{"method": "flow", "variant": "", "steps": 1, "key_params": {"reflow": 0}, "run_id": "t"},
                      {"method": "flow", "variant": "flow-ff", "steps": 1, "key_params": {"reflow": 0}, "run_id": "f"},
                      {"method": "flow", "variant": "2-rf", "steps": 1, "key_params": {"reflow": 1}, "run_id": "s",
                       "parents": {"teacher": "t"}},
                      {"method": "ddim", "variant": "", "steps": 1, "key_params": {}}]}
    [line] = straightening_reading(df, spec)
    assert f"2-rectified flow (2-rf-1) **{verdict}** the 1-rectified flow it was drawn from (flow-1)" in line
    assert f"{swd_2rf:.3f} vs 0.300" in line
    assert "high-quality fraction 0.800 vs 0.500" in line
