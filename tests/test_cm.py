"""Consistency models: the boundary condition, the curricula and target schedules, distillation from
the exact score, the sampler's levels and NFE, run dependencies, bit-exact resume and the CLI."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch

import methods
from bench.config.run import resolve_run_config
from bench.config.run import run_dir_for
from bench.data.toy2d import gaussians25
from bench.measure.timing import count_calls
from bench.metrics.toy import mixture_metrics
from bench.runs.ema import update_targets
from bench.runs.train import train
from methods.cm import CMConfig, ConsistencyModel, discretisation, target_decay
from methods.nets import NetConfig
from methods.oracle import Oracle, OracleConfig
from tests.conftest import IMAGE_SHAPE, invoke, one_error_line
from tests.test_faults import assert_same_weights

TINY_NET = NetConfig(hidden=32, depth=1, emb_dim=16)


@pytest.mark.parametrize("shape", [(2,), IMAGE_SHAPE], ids=["vector", "image"])
@pytest.mark.parametrize("sigma_min", [0.002, 0.01])
def test_the_boundary_condition_holds_exactly(shape, sigma_min):
    net = TINY_NET if len(shape) == 1 else NetConfig(channels=(16, 32), layers_per_block=1, attn_levels=())
    m = ConsistencyModel(CMConfig(mode="train", sigma_min=sigma_min, net=net), shape)
    with torch.no_grad():
        for p in m.net.parameters():  # a network far from zero output
            p.add_(torch.randn_like(p))
        x = torch.randn(4, *shape) * 3
        s_1 = m.schedule.sigmas(18)[0]  # the grid's sigma_1, as training passes it (float64)
        assert s_1 == sigma_min
        assert torch.equal(m.consistency(m.net, x, s_1.expand(4)), x)
        assert not torch.equal(m.consistency(m.net, x, torch.full((4,), 2 * sigma_min, dtype=torch.float64)), x)


def test_curricula_follow_their_formulas():
    ict = CMConfig(mode="train", s0=10, s1=1280, curriculum_steps=800)
    k_prime = math.floor(800 / (math.log2(128) + 1))  # 100
    assert [discretisation(ict, k) for k in (0, 99, 100, 250, 700, 799, 5000)] == [11, 11, 21, 41, 1281, 1281, 1281]
    ct = CMConfig(mode="train", curriculum="ct", s0=2, s1=150, curriculum_steps=1000)
    assert discretisation(ct, 0) == 2 and discretisation(ct, 1000) == 151
    assert discretisation(ct, 500) == math.ceil(math.sqrt(0.5 * (151**2 - 4) + 4) - 1) + 1
    assert discretisation(CMConfig(), 12345) == 18, "CD: a fixed N"
    assert k_prime == 100


def test_target_decay_schedules():
    assert target_decay(CMConfig(), 0) == target_decay(CMConfig(), 10_000) == 0.95  # CD: constant mu
    assert target_decay(CMConfig(mode="train"), 7) == 0.0  # iCT: theta- = stopgrad(theta)
    ct = CMConfig(mode="train", curriculum="ct", target="ema-ct", target_decay=0.9, s0=2, s1=150, curriculum_steps=100)
    for k in (0, 50, 100):
        assert target_decay(ct, k) == pytest.approx(math.exp(2 * math.log(0.9) / discretisation(ct, k)))
    assert target_decay(ct, 0) == pytest.approx(0.9)
    assert not hasattr(ConsistencyModel(CMConfig(mode="train", net=TINY_NET), (2,)), "target")


def test_the_harness_moves_the_target_by_its_decay_after_each_step():
    m = ConsistencyModel(CMConfig(net=TINY_NET, target_decay=0.9), (2,))
    assert all(torch.equal(a, b) for a, b in zip(m.target.parameters(), m.net.parameters())), "theta- starts at theta"
    with torch.no_grad():
        for p in m.net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in m.target.parameters()]
    assert update_targets(m, 0) == 0.9
    for t, b, o in zip(m.target.parameters(), before, m.net.parameters()):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    assert not any(p.requires_grad for p in m.target.parameters())
    assert "target.inp.weight" in m.state_dict(), "theta- is saved with the weights (exact resume)"


def oracle25() -> Oracle:
    mix = gaussians25()
    return Oracle(OracleConfig(), (2,), means=mix.means, std=mix.std)


def test_teacher_steps_follow_the_exact_probability_flow():
    """Heun steps of the oracle teacher over CD's Karras grid land on the 25 modes."""
    m = ConsistencyModel(CMConfig(sigma_data=2.83, N=18, net=TINY_NET), (2,))
    m.set_teacher(oracle25())
    sig = m.schedule.sigmas(18)
    x = torch.randn(3000, 2, generator=torch.Generator().manual_seed(0)) * sig[-1]
    for i in range(17, 0, -1):
        x = m.teacher_step(x, sig[i].expand(len(x)), sig[i - 1].expand(len(x)))
    got = mixture_metrics(x, gaussians25())
    assert got["modes"] == 25 and got["hq_fraction"] > 0.95, got


def test_cm_sampler_records_its_levels_and_counts_one_call_per_step():
    m = ConsistencyModel(CMConfig(mode="train", net=TINY_NET), (2,)).eval()
    cls = methods.get_sampler("cm")
    grid = m.schedule.sigmas(40).flip(0)  # index 0 is sigma_max
    two = cls.build(m, 2, cls.Options(timesteps=(0, 22), grid=40))
    assert two.settings["sigmas"] == pytest.approx([float(grid[0]), float(grid[22])], rel=1e-4, abs=1e-5)
    assert cls.build(m, 4, cls.Options(grid=40)).settings["sigmas"] == pytest.approx(
        [float(grid[i]) for i in (0, 10, 20, 30)], rel=1e-4, abs=1e-5)
    noise = torch.randn(64, 2)
    for steps in (1, 2, 4):
        built = cls.build(m, steps, None)
        with count_calls(m.denoisers()) as counter:
            built(noise, generator=torch.Generator().manual_seed(0))
        assert counter["calls"] == built.nfe == steps
    one = cls.build(m, 1, None)(noise, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        direct = m.consistency(m.net, noise * 80.0, torch.full((64,), 80.0))
    torch.testing.assert_close(one, direct, rtol=1e-4, atol=1e-4)  # diffusers' scalings are the model's
    with pytest.raises(ValueError, match="timesteps must be distinct ascending grid indices from 0"):
        cls.build(m, 2, cls.Options(timesteps=(5, 22)))
    with pytest.raises(ValueError, match="steps=3 is not valid: use 2"):
        cls.build(m, 3, cls.Options(timesteps=(0, 22)))


@pytest.mark.parametrize("mode, N", [("distill", 18), ("train", 1281)])
def test_the_default_levels_lie_on_the_models_own_training_grid(mode, N):
    """CD trains at 18 fixed levels, CT (iCT, s1 = 1280) ends at 1281: without a `grid` option the
    sampler's levels are points of that grid, where the network was trained."""
    m = ConsistencyModel(CMConfig(mode=mode, net=TINY_NET), (2,)).eval()
    cls = methods.get_sampler("cm")
    own = m.schedule.sigmas(N).flip(0)
    for steps in (1, 2, 4):
        built = cls.build(m, steps, None)
        assert built.settings["grid"] == N
        assert built.settings["sigmas"] == pytest.approx([float(own[i * (N // steps)]) for i in range(steps)],
                                                         rel=1e-4, abs=1e-5)
    with pytest.raises(ValueError, match="the model's grid has 18 levels"):
        cls.build(ConsistencyModel(CMConfig(net=TINY_NET), (2,)), 2, cls.Options(timesteps=(0, 22)))


MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 0.2])


class ExactF(torch.nn.Module):
    """The F whose f = c_skip x + c_out F is the exact consistency function of N(MU, diag(STD^2)) data:
    the probability-flow ODE of x_sigma = x_0 + sigma z keeps (x - MU) / sqrt(STD^2 + sigma^2), so
    f(x, sigma) = MU + (x - MU) sqrt(STD^2 + sigma_min^2) / sqrt(STD^2 + sigma^2)."""

    def __init__(self, model: ConsistencyModel):
        super().__init__()
        self.m = [model]

    def forward(self, inp, c_noise):
        m = self.m[0]
        sigma = torch.exp(c_noise.double() / 250).reshape(-1, 1)
        c_skip, c_out, c_in = m.scalings(sigma)
        x = inp.double() / c_in
        s_min = m.cfg.sigma_min
        f = MU + (x - MU) * ((STD**2 + s_min**2) / (STD**2 + sigma**2)).sqrt()
        return ((f - c_skip * x) / c_out).float()


CM_SAMPLERS = [s for s in methods.list_samplers() if methods.get_sampler(s).runs_on(ConsistencyModel) is None]


@pytest.mark.parametrize("steps", [1, 2, 4])
@pytest.mark.parametrize("name", CM_SAMPLERS)
def test_consistency_sampling_with_the_exact_consistency_function_recovers_gaussian_moments(name, steps):
    m = ConsistencyModel(CMConfig(mode="train", sigma_data=0.5, net=TINY_NET), (2,))
    m.net = ExactF(m)
    x = methods.get_sampler(name).build(m.eval(), steps, None)(
        torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0)), generator=torch.Generator().manual_seed(1))
    # the start N(0, sigma_max^2) misses the marginal's mean MU by MU / sigma_max: 1.25% of STD here
    assert torch.allclose(x.mean(0), MU, atol=0.02), x.mean(0)
    assert torch.allclose(x.std(0) / STD, torch.ones(2), atol=0.03), x.std(0)


def test_the_ddim_teacher_step_is_ddims_update():
    """DDIM's deterministic step x0_hat + sigma_to eps_hat (eq. 12 in the VE variable) from sigma_from."""
    m = ConsistencyModel(CMConfig(teacher_solver="ddim", net=TINY_NET), (2,))
    teacher = oracle25()
    m.set_teacher(teacher)
    x = torch.randn(64, 2, dtype=torch.float64) * 5
    s_from, s_to = torch.full((64,), 4.0, dtype=torch.float64), torch.full((64,), 1.5, dtype=torch.float64)
    t = teacher.prediction().schedule.timestep(s_from)
    eps = teacher.prediction().fn(x / (1 + 16.0) ** 0.5, t)
    torch.testing.assert_close(m.teacher_step(x, s_from, s_to), (x - 4.0 * eps) + 1.5 * eps)


def test_distillation_from_the_exact_score_of_a_gaussian_learns_its_moments_in_one_step():
    """CD end to end (Heun teacher, N = 18) on the exact eps of N(mu, 0.3^2 I): the one-step samples
    have the data's moments. (With the DDIM teacher at N = 18 the std comes out 0.25: Euler's steps
    shrink it; measured, not asserted.)"""
    torch.manual_seed(0)
    mu, std = torch.tensor([[1.0, -0.5]]), 0.3
    cfg = CMConfig(sigma_data=0.5, lr=1e-3, net=NetConfig(hidden=64, depth=2))
    m = ConsistencyModel(cfg, (2,))
    m.set_teacher(Oracle(OracleConfig(), (2,), means=mu, std=std))
    opt = torch.optim.Adam(m.net.parameters(), lr=cfg.lr)
    for k in range(600):
        loss = m(mu + std * torch.randn(256, 2), phase="model", step=k)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        update_targets(m, k)
    x = methods.get_sampler("cm").build(m.eval(), 1, None)(torch.randn(4000, 2), generator=torch.Generator())
    assert torch.allclose(x.mean(0), mu[0], atol=0.05), x.mean(0)
    assert torch.allclose(x.std(0), torch.full((2,), std), atol=0.05), x.std(0)


@pytest.mark.parametrize("solver", ["heun", pytest.param("ddim", marks=pytest.mark.slow)])
def test_distillation_from_the_exact_score_covers_all_25_modes_in_one_step(solver):
    """CD of the exact score on gaussians25 with the toy preset's network: residual MLP with Fourier
    features of its input. (Without them the one-step map of 25 modes of std 0.05 stays blurred, at a
    high-quality fraction of about 0.02 after 3000 steps: a plain MLP learns this sharp a map slowly.)"""
    torch.manual_seed(0)
    mix = gaussians25()
    cfg = CMConfig(sigma_data=2.83, lr=1e-3, teacher_solver=solver,
                   net=NetConfig(hidden=128, depth=3, fourier_freqs=(1.0, 2.0, 4.0, 8.0)))
    m = ConsistencyModel(cfg, (2,))
    m.set_teacher(oracle25())
    opt = torch.optim.Adam(m.net.parameters(), lr=cfg.lr)
    for k in range(CD_STEPS):
        x0 = mix.means[torch.randint(25, (256,))].float() + mix.std * torch.randn(256, 2)
        loss = m(x0, phase="model", step=k)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        update_targets(m, k)
    sampler = methods.get_sampler("cm").build(m.eval(), 1, None)
    x = sampler(torch.randn(5000, 2, generator=torch.Generator().manual_seed(1)), generator=torch.Generator())
    got = mixture_metrics(x, mix)
    assert got["modes"] == 25 and got["hq_fraction"] > 0.4, got


CD_STEPS = 3000


def cd_config(tiny_preset, **sets):
    return resolve_run_config("cm", model_cls=CMConfig, preset=str(tiny_preset), sets={k: str(v) for k, v in sets.items()})


def test_the_teachers_id_is_part_of_the_students_and_ct_has_no_teacher(tiny_preset):
    student = cd_config(tiny_preset)
    teacher = student.parent("teacher")
    ddpm = resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config, preset=str(tiny_preset))
    assert teacher.run_id() == ddpm.run_id(), "the teacher is the preset's own ddpm run"
    assert student.semantic_dict()["parents.teacher"] == teacher.run_id()
    assert cd_config(tiny_preset, **{"model.teacher_solver": "ddim"}).run_id() != student.run_id()
    assert cd_config(tiny_preset, **{"model.mode": "train"}).parents == ()


def test_distillation_trains_its_teacher_first_and_resumes_bit_exactly(tiny_preset, tmp_path):
    student = cd_config(tiny_preset)
    runs = tmp_path / "runs"
    lines: list[str] = []
    full = train(student, run_dir_for(student, runs), progress=False, log=lines.append)
    assert any("needs its teacher: training ddpm" in ln for ln in lines)
    stats = [json.loads(ln) for ln in (full / "stats.jsonl").read_text().splitlines()]
    assert all(s["target/decay"] == 0.95 and s["model/N"] == 6 for s in stats)
    teacher_dir = run_dir_for(student.parent("teacher"), runs)
    again = tmp_path / "again"
    again.mkdir()
    shutil.copytree(teacher_dir, again / teacher_dir.name)
    train(cd_config(tiny_preset, **{"train.steps": 10}), again / full.name, progress=False, log=lambda s: None)
    train(student, again / full.name, resume=True, progress=False, log=lambda s: None)
    assert_same_weights(full, again / full.name)


def test_consistency_training_resumes_bit_exactly(tiny_preset, tmp_path):
    cfg = cd_config(tiny_preset, **{"model.mode": "train"})
    full = train(cfg, tmp_path / "full", progress=False, log=lambda s: None)
    stats = [json.loads(ln) for ln in (full / "stats.jsonl").read_text().splitlines()]
    assert [s["model/N"] for s in stats] == [discretisation(cfg.model, k - 1) for k in (10, 20, 30)]
    assert "target/decay" not in stats[0], "iCT has no target network"
    train(cd_config(tiny_preset, **{"model.mode": "train", "train.steps": 20}), tmp_path / "part", progress=False,
          log=lambda s: None)
    train(cfg, tmp_path / "part", resume=True, progress=False, log=lambda s: None)
    assert_same_weights(full, tmp_path / "part")


def test_distillation_from_the_oracle_needs_no_teacher_run(tiny_preset, tmp_path):
    student = cd_config(tiny_preset, **{"model.teacher": "oracle", "train.steps": 10})
    run = train(student, tmp_path / "runs" / "cd", progress=False, log=lambda s: None)
    assert (run / "config.json").exists() and sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["cd"]


def test_bench_train_cm_uses_the_cached_ddpm_run(tiny_preset, tmp_path):
    first = invoke(["train", "ddpm", "--preset", str(tiny_preset), "--no-progress"], tmp_path)
    assert first.exit_code == 0, first.output
    result = invoke(["train", "cm", "--preset", str(tiny_preset), "--set", "model.mode=distill", "--no-progress"],
                    tmp_path)
    assert result.exit_code == 0, result.output
    assert "needs its teacher" not in result.output, "the cached teacher is used, not retrained"
    assert len(list((tmp_path / "runs").iterdir())) == 2


@pytest.mark.parametrize("sets,message", [
    (["model.teacher=nope"], "unknown model 'nope'"),
    (["model.teacher=flow"], "teacher 'flow' predicts velocity, not eps"),
    (["model.mode=both"], "unknown mode 'both'"),
    (["model.distance=lpips"], "unknown distance 'lpips'"),
    (["model.sigma_min=100"], "need 0 < sigma_min < sigma_max"),
    (["model.target_decay=1.5"], "target_decay must be in [0, 1)"),
])
def test_bad_cm_options_are_one_line_errors(sets, message, tiny_preset, tmp_path):
    args = ["train", "cm", "--preset", str(tiny_preset), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    result = invoke(args, tmp_path)
    assert message in one_error_line(result)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_mismatched_teacher_folder_is_a_one_line_error(tiny_preset, tmp_path):
    student = cd_config(tiny_preset)
    teacher_dir = run_dir_for(student.parent("teacher"), tmp_path / "runs")
    other = resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config, preset=str(tiny_preset),
                               sets={"train.seed": "7"})
    train(other, teacher_dir, progress=False, log=lambda s: None)  # a different run in the teacher's folder
    result = invoke(["train", "cm", "--preset", str(tiny_preset), "--no-progress"], tmp_path)
    assert "does not hold the teacher this cm run needs" in one_error_line(result)


def test_the_teachers_timestep_of_a_sigma_inverts_its_schedule():
    from methods.prediction import linear_schedule

    sched = linear_schedule(1000, 1e-4, 0.02)
    t = torch.tensor([0.0, 0.5, 17.25, 500.0, 998.9, 999.0], dtype=torch.float64)
    abar = sched.alpha_bar(t)
    sigma = ((1 - abar) / abar).sqrt()
    torch.testing.assert_close(sched.timestep(sigma), t)
    assert sched.timestep(torch.tensor([1e-5, 1e5], dtype=torch.float64)).tolist() == [0.0, 999.0]
