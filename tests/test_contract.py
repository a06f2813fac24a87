"""Contract tests: every registered model honours the Model contract, and every registered sampler
the Sampler contract on every model it declares it runs on."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load, save

import methods
from bench.measure.timing import count_calls
from tests.conftest import IMAGE_SHAPE, VECTOR_SHAPE, tiny_model_config

MODELS = [n for n in methods.list_models() if methods.get_model(n).samplable]  # generative models
STAGES = [n for n in methods.list_models() if not methods.get_model(n).samplable]  # the autoencoder
TRAINABLE = [n for n in MODELS + STAGES if methods.get_model(n).trainable]
SAMPLERS = methods.list_samplers()
SHAPES = pytest.mark.parametrize("shape", [VECTOR_SHAPE, IMAGE_SHAPE], ids=["vector", "image"])
PAIRS = [(s, m) for s in SAMPLERS for m in MODELS if methods.get_sampler(s).runs_on(methods.get_model(m)) is None]


def make(name: str, shape: tuple[int, ...]) -> methods.Model:
    cls = methods.get_model(name)
    return cls(tiny_model_config(name, shape), shape)


def batch(shape: tuple[int, ...], n: int = 16) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)


@pytest.mark.parametrize("name", MODELS)
def test_model_registration(name):
    cls = methods.get_model(name)
    assert cls.name == name and cls.phases and cls.summary
    assert cls.native_sampler in SAMPLERS and methods.get_sampler(cls.native_sampler).runs_on(cls) is None
    assert methods.samplers_for(name)[0] == cls.native_sampler


@pytest.mark.parametrize("name", STAGES)
def test_stages_have_no_sampler_and_say_so(name):
    cls = methods.get_model(name)
    assert cls.name == name and cls.summary and not cls.native_sampler and methods.samplers_for(name) == []
    with pytest.raises(ValueError, match="not a generative model"):
        make(name, IMAGE_SHAPE).prediction()


@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_registration(name):
    cls = methods.get_sampler(name)
    assert cls.name == name and cls.summary and cls.order >= 1
    assert dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen
    assert cls.runs_on(methods.get_model(cls.default_model)) is None, "a sampler must run on its default model"


def test_every_model_has_a_sampler_and_every_sampler_a_model():
    assert {m for _, m in PAIRS} == set(MODELS) and {s for s, _ in PAIRS} == set(SAMPLERS)


@SHAPES
@pytest.mark.parametrize("name", TRAINABLE)
def test_losses_are_finite_scalars_and_one_step_changes_parameters(name, shape):
    if name in STAGES and shape == VECTOR_SHAPE:
        pytest.skip("the autoencoder is for images")
    m = make(name, shape)
    groups = m.param_groups()
    assert set(groups) == set(m.phases_for(m.cfg))
    for phase in m.phases_for(m.cfg):
        before = [p.detach().clone() for p in groups[phase].params]
        opt = torch.optim.AdamW(groups[phase].params, lr=1e-2)
        out = m(batch(shape), phase=phase, step=0)
        assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        changed = any(not torch.equal(b, p) for b, p in zip(before, groups[phase].params))
        assert changed, f"{name}: a {phase} step left every parameter unchanged"


@SHAPES
@pytest.mark.parametrize("sampler,model", PAIRS)
def test_sampler_shape_determinism_and_measured_nfe(sampler, model, shape):
    m = make(model, shape).eval()
    cls = methods.get_sampler(sampler)
    rng = cls.valid_steps(type(m), m.cfg, cls.Options())
    for steps in sorted({rng.lo, min(rng.lo + 2, rng.hi), max(rng.lo, min(7, rng.hi))}):
        built = cls.build(m, steps, None)
        assert built.steps == steps and built.label and built.nfe == cls.nfe(steps, cls.Options())
        noise = batch(shape, 4)
        with count_calls(m.denoisers()) as counter:
            a = built(noise, generator=torch.Generator().manual_seed(3))
        b = built(noise, generator=torch.Generator().manual_seed(3))
        assert a.shape == noise.shape and torch.isfinite(a).all()
        assert torch.equal(a, b), "same noise and seed must give the same samples"
        if built.adaptive:  # the solver picks its steps: nothing declared, the hooks measure the calls
            assert cls.adaptive and built.nfe == 0 and counter["calls"] > 0
        else:
            assert counter["calls"] == built.nfe, f"{sampler} on {model}: measured NFE {counter['calls']} != {built.nfe}"


@pytest.mark.parametrize("sampler,model", PAIRS)
def test_invalid_steps_and_wrong_models_are_rejected(sampler, model):
    m = make(model, VECTOR_SHAPE)
    cls = methods.get_sampler(sampler)
    rng = cls.valid_steps(type(m), m.cfg, cls.Options())
    with pytest.raises(ValueError, match="is not valid"):
        cls.build(m, rng.hi + 1, None)
    assert rng.error(0) is not None
    for other in MODELS:
        if cls.runs_on(methods.get_model(other)) is not None:
            with pytest.raises(ValueError, match=f"{sampler} needs"):
                cls.build(make(other, VECTOR_SHAPE), rng.lo, None)


@pytest.mark.parametrize("sampler,model", PAIRS)
def test_nfe_budgets_pick_the_most_steps_that_fit(sampler, model):
    m = make(model, VECTOR_SHAPE)
    cls = methods.get_sampler(sampler)
    opts = cls.Options()
    for budget in (1, 2, 5, 10):
        steps = cls.steps_for_nfe(budget, type(m), m.cfg, opts)
        if steps is None or m.steps_are_trained:
            continue
        assert cls.nfe(steps, opts) <= budget
        bigger = steps + 1
        assert cls.valid_steps(type(m), m.cfg, opts).error(bigger) or cls.nfe(bigger, opts) > budget


@SHAPES
@pytest.mark.parametrize("name", TRAINABLE)
def test_state_dict_round_trip_through_safetensors(name, shape):
    if name in STAGES and shape == VECTOR_SHAPE:
        pytest.skip("the autoencoder is for images")
    m = make(name, shape).eval()
    blob = save({k: v.contiguous() for k, v in m.state_dict().items()})
    fresh = make(name, shape).eval()
    fresh.load_state_dict(load(blob))
    if name in STAGES:  # a stage round-trips through its decoder
        z = torch.randn(2, *m.latent_shape, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            assert torch.equal(m.decode(z), fresh.decode(z))
        return
    sampler = methods.get_sampler(m.native_sampler)
    steps = sampler.default_steps(type(m), m.cfg)
    noise = batch(shape, 2)
    a = sampler.build(m, steps, None)(noise, generator=torch.Generator().manual_seed(5))
    b = sampler.build(fresh, steps, None)(noise, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
