"""Contract tests: every registered method honours the Method/Sampler interface."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load, save

import methods
from bench.timing import count_calls
from tests.conftest import tiny_model_config

SHAPE = (2,)
ALL = methods.list_methods()


def make(name: str) -> methods.Method:
    cls = methods.get_method(name)
    return cls(tiny_model_config(name), SHAPE)


def batch(n: int = 16) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ALL)
def test_registration(name):
    cls = methods.get_method(name)
    assert cls.name == name
    assert cls.phases and cls.summary
    trained = methods.get_method(cls.checkpoint_name())
    assert trained.trained_as is None, "a checkpoint owner must train itself"


@pytest.mark.parametrize("name", ALL)
def test_losses_are_finite_scalars_and_one_step_changes_parameters(name):
    m = make(name)
    groups = m.param_groups()
    assert set(groups) == set(m.phases)
    for phase in m.phases:
        before = [p.detach().clone() for p in groups[phase].params]
        opt = torch.optim.AdamW(groups[phase].params, lr=1e-2)
        out = m(batch(), phase=phase, step=0)
        assert out["loss"].dim() == 0 and torch.isfinite(out["loss"])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        changed = any(not torch.equal(b, p) for b, p in zip(before, groups[phase].params))
        assert changed, f"{name}: a {phase} step left every parameter unchanged"


@pytest.mark.parametrize("name", ALL)
def test_sampler_shape_determinism_and_measured_nfe(name):
    m = make(name).eval()
    cls = type(m)
    steps = cls.default_steps(m.cfg)
    sampler = m.make_sampler(steps)
    assert sampler.steps == steps and sampler.label
    noise = batch(8)
    with count_calls(m.denoisers()) as counter:
        a = sampler(noise, generator=torch.Generator().manual_seed(3))
    b = sampler(noise, generator=torch.Generator().manual_seed(3))
    assert a.shape == noise.shape
    assert torch.isfinite(a).all()
    assert torch.equal(a, b), "same noise and seed must give the same samples"
    assert counter["calls"] == sampler.nfe, f"{name}: measured NFE {counter['calls']} != declared {sampler.nfe}"


@pytest.mark.parametrize("name", ALL)
def test_invalid_steps_are_rejected(name):
    m = make(name)
    rng = type(m).valid_steps(m.cfg)
    with pytest.raises(ValueError):
        m.make_sampler(rng.hi + 1)
    assert rng.error(0) is not None


@pytest.mark.parametrize("name", ALL)
def test_state_dict_round_trip_through_safetensors(name):
    m = make(name).eval()
    blob = save({k: v.contiguous() for k, v in m.state_dict().items()})
    fresh = make(name).eval()
    fresh.load_state_dict(load(blob))
    steps = type(m).default_steps(m.cfg)
    noise = batch(4)
    a = m.make_sampler(steps)(noise, generator=torch.Generator().manual_seed(5))
    b = fresh.make_sampler(steps)(noise, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
