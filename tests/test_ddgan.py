"""DDGAN: the schedule, posterior sampling, the update order, R1, the ablations and divergence."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import methods
from bench.config.run import resolve_run_config
from bench.errors import DivergenceError
from bench.measure.timing import count_calls
from bench.config.run import list_checkpoints
from bench.runs.train import train
from methods.ddgan import DDGAN, Coefs, make_coefs
from methods.schedules import vp_discretised_betas
from tests.conftest import IMAGE_SHAPE, VECTOR_SHAPE, native_sampler, tiny_model_config


def make(shape=VECTOR_SHAPE, **changes) -> DDGAN:
    cfg = dataclasses.replace(tiny_model_config("ddgan", shape), **changes)
    return DDGAN(cfg, shape)


def coefs(T: int) -> Coefs:
    return Coefs(**make_coefs(T, 0.1, 20.0))


# --- schedule ----------------------------------------------------------------------------------

@pytest.mark.parametrize("T,expected", [
    (1, [0.99996]),
    (2, [0.921, 0.9995]),
    (4, [0.478, 0.849, 0.956, 0.987]),
])
def test_betas_match_the_recipe(T, expected):
    betas = vp_discretised_betas(T)
    assert len(betas) == T + 1 and betas[0].item() == pytest.approx(1e-8)
    assert betas[1:].tolist() == pytest.approx(expected, abs=6e-4)


def test_t8_betas_span_the_recipe_values_and_the_method_uses_them():
    betas = vp_discretised_betas(8)
    assert betas[1].item() == pytest.approx(0.156, abs=6e-4) and betas[8].item() == pytest.approx(0.904, abs=6e-4)
    m = make(T=4)
    assert torch.allclose(m.sqrt_beta[1:] ** 2, vp_discretised_betas(4)[1:].float(), rtol=1e-5)


# --- posterior sampling ------------------------------------------------------------------------

@pytest.mark.parametrize("t", [1, 2, 3])
def test_posterior_sampling_with_the_true_x0_has_the_moments_of_q(t):
    """x_t ~ q(x_t | x_{t+1}, x_0) sampled by the method has the recipe's mean and variance."""
    T, n = 4, 200_000
    betas = vp_discretised_betas(T)
    abar = torch.cumprod(1 - betas, 0)
    k = t + 1  # the posterior of step t+1 gives x_t
    mean_x0 = betas[k] * abar[k - 1].sqrt() / (1 - abar[k])
    mean_xt = (1 - abar[k - 1]) * (1 - betas[k]).sqrt() / (1 - abar[k])
    var = betas[k] * (1 - abar[k - 1]) / (1 - abar[k])
    x0, x_next = torch.tensor([[1.5, -0.5]]).expand(n, 2), torch.tensor([[0.3, 2.0]]).expand(n, 2)
    tt = torch.full((n,), t)
    x = coefs(T).posterior_sample(x0, x_next, tt, torch.randn(n, 2, generator=torch.Generator().manual_seed(0)))
    expected = (mean_x0 * x0[0] + mean_xt * x_next[0]).float()
    assert torch.allclose(x.mean(0), expected, atol=4 * math.sqrt(var / n))
    assert torch.allclose(x.var(0), torch.full((2,), var.item()), rtol=0.02)


@pytest.mark.parametrize("t", [0, 1, 2, 3])
def test_posterior_of_a_forward_pair_reproduces_q_of_x_t_given_x0(t):
    """Draw (x_t, x_{t+1}) ~ q, resample x_t from the posterior given the true x_0: the result must have
    the marginal q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (at t = 0 the posterior is exact)."""
    n, c = 200_000, coefs(4)
    gen = torch.Generator().manual_seed(1)
    x0 = torch.tensor([[2.0, -1.0]]).expand(n, 2)
    tt = torch.full((n,), t)
    _, x_next = c.q_pair(x0, tt, torch.randn(n, 2, generator=gen), torch.randn(n, 2, generator=gen))
    x_t = c.posterior_sample(x0, x_next, tt, torch.randn(n, 2, generator=gen))
    assert torch.allclose(x_t.mean(0), c.sqrt_abar[t] * x0[0], atol=0.01)
    assert torch.allclose(x_t.std(0), c.sqrt_1m_abar[t].expand(2), rtol=0.01, atol=2e-4)


def test_last_step_adds_no_noise_and_eps_parameterization_inverts_q():
    c = coefs(4)
    x0, x_next = torch.randn(8, 2), torch.randn(8, 2)
    t0 = torch.zeros(8, dtype=torch.long)
    a = c.posterior_sample(x0, x_next, t0, torch.randn(8, 2))
    b = c.posterior_sample(x0, x_next, t0, torch.randn(8, 2))
    assert torch.equal(a, b)
    t, eps = torch.randint(0, 4, (8,)), torch.randn(8, 2)
    x_t1 = c.sqrt_abar[t + 1, None] * x0 + c.sqrt_1m_abar[t + 1, None] * eps
    assert torch.allclose(c.x0_from_eps(eps, x_t1, t), x0, atol=1e-3)


# --- training ----------------------------------------------------------------------------------

def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters()))


def test_one_iteration_updates_the_discriminator_then_the_generator():
    m = make()
    assert m.phases == ("disc", "gen")
    groups = m.param_groups()
    assert groups["disc"].betas == (0.5, 0.9) and groups["gen"].betas == (0.5, 0.9)
    opt = {k: torch.optim.Adam(g.params, lr=1e-2, betas=g.betas) for k, g in groups.items()}
    x0 = torch.randn(32, 2)
    for phase, moves, stays in (("disc", m.disc, m.gen), ("gen", m.gen, m.disc)):
        b_moves, b_stays = snapshot(moves), snapshot(stays)
        out = m(x0, phase=phase, step=1)
        m.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt[phase].step()
        assert changed(b_moves, moves), f"the {phase} step left its own network unchanged"
        assert not changed(b_stays, stays), f"the {phase} step changed the other network"
        assert all(p.grad is None for p in stays.parameters()), f"the {phase} step computed the other's gradients"


def test_the_harness_runs_disc_then_gen_each_iteration(tiny_preset, tmp_path, monkeypatch):
    order = []
    for name in ("disc_losses", "gen_losses"):
        original = getattr(DDGAN, name)

        def record(self, *args, _original=original, _name=name, **kwargs):
            order.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(DDGAN, name, record)
    cfg = resolve_run_config("ddgan", model_cls=DDGAN.Config, preset=str(tiny_preset), sets={"train.steps": "3"})
    train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    assert order == ["disc_losses", "gen_losses"] * 3


def test_r1_is_the_gradient_penalty_on_real_x_t_when_enabled_and_absent_otherwise():
    x0 = torch.randn(64, 2)
    m = make(r1_gamma=2.0, lazy_reg=3)
    torch.manual_seed(5)
    out = m(x0, phase="disc", step=3)
    assert out["r1"].item() > 0
    assert torch.allclose(out["loss"], out["real"] + out["fake"] + out["r1"])
    torch.manual_seed(5)  # the same t and pair again: R1 is (gamma/2) E||grad_{x_t} D(x_t, t, x_{t+1})||^2
    t, x_t, x_next = m.real_pair(x0)
    x_t.requires_grad_(True)
    (grad,) = torch.autograd.grad(m.disc(x_t, t, x_next).sum(), x_t)
    assert out["r1"].item() == pytest.approx(1.0 * grad.pow(2).sum(1).mean().item(), rel=1e-5)
    off_step = m(x0, phase="disc", step=4)  # lazy: only every lazy_reg steps
    disabled = make(r1_gamma=0.0, lazy_reg=1)(x0, phase="disc", step=0)
    for out in (off_step, disabled):
        assert "r1" not in out
        assert torch.allclose(out["loss"], out["real"] + out["fake"])


def test_a_z_less_generator_is_deterministic_given_x_t():
    x, t = torch.randn(16, 2), torch.randint(0, 2, (16,))
    m = make(use_z=False)
    assert m.gen.nz == 0
    assert torch.equal(m.predict(x, t, None), m.predict(x, t, None))
    one_step = native_sampler(make(use_z=False, T=1), 1)  # T = 1 has no posterior noise: a function of x_T
    noise = torch.randn(16, 2)
    a = one_step(noise, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, one_step(noise, generator=torch.Generator().manual_seed(2)))
    with_z = make()
    z1, z2 = torch.randn(16, with_z.gen.nz), torch.randn(16, with_z.gen.nz)
    with_z.gen.latent.mapping[1].weight.data.normal_()  # make sure z reaches the output at initialisation
    with_z.gen.out[1].weight.data.normal_()  # (the output layer starts at ~0)
    assert not torch.allclose(with_z.predict(x, t, z1), with_z.predict(x, t, z2))


@pytest.mark.parametrize("shape", [VECTOR_SHAPE, IMAGE_SHAPE], ids=["vector", "image"])
@pytest.mark.parametrize("parameterization", ["x0", "direct", "eps"])
def test_every_parameterization_trains_and_samples_with_nfe_t(shape, parameterization):
    m = make(shape, parameterization=parameterization, T=3)
    for phase in m.phases:
        assert torch.isfinite(m(torch.rand(8, *shape) * 2 - 1, phase=phase, step=0)["loss"])
    sampler = native_sampler(m, 3)
    assert sampler.label == "ddgan-T3" and sampler.settings["parameterization"] == parameterization
    with count_calls(m.denoisers()) as counter:
        x = sampler(torch.randn(4, *shape), generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, *shape) and counter["calls"] == sampler.nfe == 3


def test_images_of_28_px_and_tanh_outputs():
    m = make((1, 28, 28), T=2)
    x = native_sampler(m, 2)(torch.randn(4, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 28, 28) and x.abs().max() <= 1.0


@pytest.mark.parametrize("changes,message", [
    ({"T": 0}, "T=0 is out of range"),
    ({"T": 65}, "T=65 is out of range"),
    ({"parameterization": "v"}, "parameterization 'v' is unknown"),
    ({"out_act": "relu"}, "out_act 'relu' is unknown"),
    ({"lazy_reg": 0}, "lazy_reg must be >= 1"),
])
def test_bad_configs_are_rejected(changes, message):
    with pytest.raises(ValueError, match=message):
        DDGAN.check_config(dataclasses.replace(DDGAN.Config(), **changes))


def test_a_nan_loss_stops_training_and_keeps_finite_checkpoints(tiny_preset, tmp_path, monkeypatch):
    """Three good iterations (a checkpoint after each), then the generator's loss turns NaN."""
    forward = DDGAN.forward

    def nan_at_step_3(self, x0, *, phase, step):
        out = forward(self, x0, phase=phase, step=step)
        return {**out, "loss": out["loss"] * float("nan")} if step == 3 and phase == "gen" else out

    monkeypatch.setattr(DDGAN, "forward", nan_at_step_3)
    cfg = resolve_run_config("ddgan", model_cls=DDGAN.Config, preset=str(tiny_preset), sets={"train.ckpt_every": "1"})
    with pytest.raises(DivergenceError, match=r"diverged at step 3: the gen loss is nan; the last good checkpoint"
                                              r" is step-00000003"):
        train(cfg, tmp_path / "run", progress=False, log=lambda s: None)
    from safetensors.torch import load_file

    ckpts = list_checkpoints(tmp_path / "run")
    assert ckpts, "the run must have saved a checkpoint before it diverged"
    for ckpt in ckpts:
        assert all(torch.isfinite(v).all() for v in load_file(ckpt / "model.safetensors").values())


def test_registry_knows_ddgan():
    cls = methods.get_model("ddgan")
    assert cls.steps_are_trained and cls.key_params == ("T",) and cls.ema_modules == ("gen",)
    assert cls.steps_overrides(8) == {"T": 8}
    sampler = methods.get_sampler("ddgan")
    rng = sampler.valid_steps(cls, cls.Config(T=8), sampler.Options())
    assert rng.error(8) is None and rng.error(4)
