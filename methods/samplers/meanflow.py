"""MeanFlow's sampler: k steps of the average velocity on t_i = 1 - i / k, from noise (t = 1) to data:
z_{t_{i+1}} = z_{t_i} - (t_i - t_{i+1}) u(z_{t_i}, t_{i+1}, t_i); one step is x = eps - u(eps, 0, 1).
Exact for any k when u is the true average velocity (methods/meanflow.py), so k trades the network's error,
not a discretisation error. k network calls."""

from __future__ import annotations

import functools

import torch

from methods.base import LoopSampler, StepRange
from methods.registry import register_sampler
from methods.samplers.base import SamplerDef

MAX_STEPS = 1000


def meanflow_sample(pred, noise: torch.Tensor, *, steps: int, generator=None) -> torch.Tensor:
    ts = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()
    z = noise
    for t, r in zip(ts[:-1], ts[1:]):
        tt = torch.full((z.shape[0],), t, device=z.device, dtype=z.dtype)
        rr = torch.full((z.shape[0],), r, device=z.device, dtype=z.dtype)
        z = z - (t - r) * pred.fn(z, rr, tt)
    return pred.decode(z)


@register_sampler("meanflow")
class MeanFlowSampler(SamplerDef):
    kinds = ("average-velocity",)
    times = ("continuous",)
    default_model = "meanflow"
    grid_kinds = ()  # its own uniform grid in t
    summary = "MeanFlow: k steps of the average velocity, z -= (t - r) u(z, r, t); one step x = eps - u(eps, 0, 1)"

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None) -> StepRange:
        return StepRange(1, MAX_STEPS, "any number of steps on a uniform grid in t")

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        return 1

    @classmethod
    def build(cls, model, steps: int, opts=None, grid=None) -> LoopSampler:
        cls.check(model, steps, opts, grid)
        loop = functools.partial(meanflow_sample, model.prediction(), steps=steps)
        return LoopSampler(loop, steps=steps, nfe=steps, label=f"meanflow-{steps}",
                           settings={"grid": f"uniform t_i = 1 - i / {steps}", "final_sigma": 0.0})
