"""ODE samplers of a flow's velocity field, dx/dt = v(x, t), integrated from t = 1 (noise) to
t = 0 (data) on the uniform grid t_i = 1 - i / N (methods/flow.py has the conventions).

name       update                                                        network calls
flow       Euler, the rectified-flow sampler: x += (t_{i+1} - t_i) v(x, t_i)      N
euler      the same loop, when `euler` is asked of a flow model (k_samplers.py)   N
heun       Euler predictor, trapezoidal corrector; the last step stays Euler,     2N - 1
           as EDM's Algorithm 1 (a single first-order step keeps global order 2)
midpoint   explicit midpoint (RK2)                                                2N
dopri5     adaptive Dormand-Prince 5(4) through torchdiffeq; rtol / atol set the  measured
           steps, and one step size is shared by the whole batch (torchdiffeq's
           error norm is over the batch tensor), so samples depend on the batch
fm-euler   diffusers' FlowMatchEulerDiscreteScheduler (its grid: sigma_max 1 down  N
           to 1 / num_train_timesteps, then 0; `shift` as in SD3)
"""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from methods.base import LoopSampler, Model, StepRange
from methods.prediction import Prediction
from methods.registry import register_sampler
from methods.samplers.base import SamplerDef
from methods.samplers.diffusers_loop import recorded_config

GRID = "uniform t_i = 1 - i / N, from noise (t = 1) to data (t = 0)"


def _v(pred: Prediction, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return pred.fn(x, t.reshape(1).expand(x.shape[0]))


def time_grid(steps: int, like: torch.Tensor) -> torch.Tensor:
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).to(device=like.device, dtype=like.dtype)


def euler(pred: Prediction, noise: torch.Tensor, *, steps: int, generator=None) -> torch.Tensor:
    x, ts = noise, time_grid(steps, noise)
    for t, s in zip(ts[:-1], ts[1:]):
        x = x + (s - t) * _v(pred, x, t)
    return pred.decode(x)


def heun(pred: Prediction, noise: torch.Tensor, *, steps: int, generator=None) -> torch.Tensor:
    x, ts = noise, time_grid(steps, noise)
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
        d = _v(pred, x, t)
        x_next = x + (s - t) * d
        if i < steps - 1:
            x_next = x + (s - t) * 0.5 * (d + _v(pred, x_next, s))
        x = x_next
    return pred.decode(x)


def midpoint(pred: Prediction, noise: torch.Tensor, *, steps: int, generator=None) -> torch.Tensor:
    x, ts = noise, time_grid(steps, noise)
    for t, s in zip(ts[:-1], ts[1:]):
        h = s - t
        x = x + h * _v(pred, x + 0.5 * h * _v(pred, x, t), t + 0.5 * h)
    return pred.decode(x)


def dopri5(pred: Prediction, noise: torch.Tensor, *, rtol: float, atol: float, generator=None) -> torch.Tensor:
    from torchdiffeq import odeint

    span = torch.tensor([1.0, 0.0], dtype=noise.dtype, device=noise.device)
    x = odeint(lambda t, x: _v(pred, x, t), noise, span, method="dopri5", rtol=rtol, atol=atol)[-1]
    return pred.decode(x)


def fm_euler(pred: Prediction, noise: torch.Tensor, *, template, steps: int, generator=None) -> torch.Tensor:
    scheduler = copy.deepcopy(template)
    scheduler.set_timesteps(steps, device=noise.device)
    x = noise
    for t in scheduler.timesteps:
        v = _v(pred, x, t / scheduler.config.num_train_timesteps)
        x = scheduler.step(v, t, x, generator=generator).prev_sample
    return pred.decode(x)


class FlowSampler(SamplerDef):
    """A fixed-grid ODE solver of a velocity field (`loop` is one of the functions above)."""
    grid_kinds = ()  # its own grid (uniform t, trained steps or the Karras levels it was trained on)

    kinds = ("velocity",)
    times = ("continuous",)
    default_model = "flow"
    calls_per_step = 1

    @staticmethod
    def loop(pred, noise, *, steps, generator=None):
        raise NotImplementedError

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        return 100

    @classmethod
    def nfe(cls, steps: int, opts, grid=None) -> int:
        return cls.calls_per_step * steps

    @classmethod
    def settings(cls, opts) -> dict:
        return {"solver": cls.name, "time_grid": GRID}

    @classmethod
    def build(cls, model: Model, steps: int, opts=None, grid=None) -> LoopSampler:
        opts = cls.check(model, steps, opts)
        loop = functools.partial(cls.loop, model.prediction(), steps=steps)
        return LoopSampler(loop, steps=steps, nfe=cls.nfe(steps, opts), label=f"{cls.name}-{steps}",
                           settings=cls.settings(opts))


def build_on_flow(name: str, model: Model, steps: int, nfe: int) -> LoopSampler:
    """`euler` / `heun` asked of a flow model: the loop of this file, labelled with the asked name and
    declaring the asked sampler's own call count."""
    loop = {"euler": euler, "heun": heun}[name]
    return LoopSampler(functools.partial(loop, model.prediction(), steps=steps), steps=steps, nfe=nfe,
                       label=f"{name}-{steps}", settings={"solver": name, "time_grid": GRID})


@register_sampler("flow")
class FlowEuler(FlowSampler):
    loop = staticmethod(euler)
    summary = "Euler on a flow's velocity field, N uniform steps (the rectified-flow sampler)"


@register_sampler("midpoint")
class Midpoint(FlowSampler):
    loop = staticmethod(midpoint)
    order = 2
    calls_per_step = 2
    summary = "explicit midpoint (RK2) on a flow's velocity field: 2N network calls"


@dataclasses.dataclass(frozen=True)
class Dopri5Options:
    rtol: float = 1e-5
    atol: float = 1e-5


@register_sampler("dopri5")
class Dopri5(FlowSampler):
    Options = Dopri5Options
    order = 5
    adaptive = True
    summary = "adaptive Dormand-Prince 5(4) (torchdiffeq); NFE is measured, rtol/atol recorded"

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None) -> StepRange:
        return StepRange(1, 1, "adaptive: rtol and atol choose the steps; run it at steps = 1")

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        return 1

    @classmethod
    def nfe(cls, steps: int, opts, grid=None) -> int:
        return 0  # not known in advance

    @classmethod
    def steps_for_nfe(cls, budget, model_cls, model_cfg, opts, grid=None):
        return None

    @classmethod
    def validate(cls, opts: Dopri5Options) -> None:
        if not (opts.rtol > 0 and opts.atol > 0):
            raise ValueError(f"dopri5: rtol and atol must be > 0, got {opts.rtol}, {opts.atol}")

    @classmethod
    def build(cls, model: Model, steps: int, opts=None, grid=None) -> LoopSampler:
        opts = cls.check(model, steps, opts)
        loop = functools.partial(dopri5, model.prediction(), rtol=opts.rtol, atol=opts.atol)
        settings = {"solver": "dopri5", "library": "torchdiffeq", "rtol": opts.rtol, "atol": opts.atol,
                    "step_size": "adaptive, one per batch"}
        return LoopSampler(loop, steps=steps, nfe=0, label=f"dopri5-{opts.rtol:g}", settings=settings,
                           adaptive=True)


@dataclasses.dataclass(frozen=True)
class FMEulerOptions:
    shift: float = 1.0  # sigma -> shift sigma / (1 + (shift - 1) sigma) (SD3); 1 leaves the grid as is


@register_sampler("fm-euler")
class FMEuler(FlowSampler):
    Options = FMEulerOptions
    summary = "Euler through diffusers' FlowMatchEulerDiscreteScheduler (its sigma grid, SD3 shift option)"

    @classmethod
    def validate(cls, opts: FMEulerOptions) -> None:
        if not opts.shift > 0:
            raise ValueError(f"fm-euler: shift must be > 0, got {opts.shift}")

    @classmethod
    def build(cls, model: Model, steps: int, opts=None, grid=None) -> LoopSampler:
        opts = cls.check(model, steps, opts)
        template = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=opts.shift,
                                                   use_dynamic_shifting=False, stochastic_sampling=False,
                                                   invert_sigmas=False)
        probe = copy.deepcopy(template)
        probe.set_timesteps(steps)
        settings = {**recorded_config(probe), "sigmas": [round(float(s), 6) for s in probe.sigmas]}
        loop = functools.partial(fm_euler, model.prediction(), template=template, steps=steps)
        return LoopSampler(loop, steps=steps, nfe=steps, label=f"fm-euler-{steps}", settings=settings)

