"""Contract tests: every registered method honours the Method/Sampler interface."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

import methods
from bench.timing import count_calls
from tests.conftest import IMAGE_SHAPE, VECTOR_SHAPE, tiny_model_config

ALL = methods.list_methods()
SHAPES = pytest.mark.parametrize("shape", [VECTOR_SHAPE, IMAGE_SHAPE], ids=["vector", "image"])


def make(name: str, shape: tuple[int, ...]) -> methods.Method:
    cls = methods.get_method(name)
    return cls(tiny_model_config(name, shape), shape)


def batch(shape: tuple[int, ...], n: int = 16) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)


@pytest.mark.parametrize("name", ALL)
def test_registration(name):
    cls = methods.get_method(name)
    assert cls.name == name
    assert cls.phases and cls.summary
    trained = methods.get_method(cls.checkpoint_name())
    assert trained.trained_as is None, "a checkpoint owner must train itself"


@SHAPES
@pytest.mark.parametrize("name", ALL)
def test_losses_are_finite_scalars_and_one_step_changes_parameters(name, shape):
    m = make(name, shape)
    groups = m.param_groups()
    assert set(groups) == set(m.phases)
    for phase in m.phases:
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
@pytest.mark.parametrize("name", ALL)
def test_sampler_shape_determinism_and_measured_nfe(name, shape):
    m = make(name, shape).eval()
    cls = type(m)
    steps = cls.default_steps(m.cfg)
    sampler = m.make_sampler(steps)
    assert sampler.steps == steps and sampler.label
    noise = batch(shape, 4)
    with count_calls(m.denoisers()) as counter:
        a = sampler(noise, generator=torch.Generator().manual_seed(3))
    b = sampler(noise, generator=torch.Generator().manual_seed(3))
    assert a.shape == noise.shape
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), "same noise and seed must give the same samples"
    assert counter["calls"] == sampler.nfe, f"{name}: measured NFE {counter['calls']} != declared {sampler.nfe}"


@pytest.mark.parametrize("name", ALL)
def test_invalid_steps_are_rejected(name):
    m = make(name, VECTOR_SHAPE)
    rng = type(m).valid_steps(m.cfg)
    with pytest.raises(ValueError):
        m.make_sampler(rng.hi + 1)
    assert rng.error(0) is not None


@SHAPES
@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_through_safetensors(name, shape):
    m = make(name, shape).eval()
    blob = save({k: v.contiguous() for k, v in m.state_dict().items()})
    fresh = make(name, shape).eval()
    fresh.load_state_dict(load(blob))
    steps = type(m).default_steps(m.cfg)
    noise = batch(shape, 2)
    a = m.make_sampler(steps)(noise, generator=torch.Generator().manual_seed(5))
    b = fresh.make_sampler(steps)(noise, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
