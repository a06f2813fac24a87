"""Consistency sampling (Song et al. 2023, Algorithm 1) through diffusers'
CMStochasticIterativeScheduler: x = sigma_max z; x_0 = f(x, sigma_max); then for each further
level tau, x = x_0 + sqrt(tau^2 - sigma_min^2) z and x_0 = f(x, tau). One network call per step.

The levels are indices into a Karras grid of `grid` points (index 0 is sigma_max), as in the CM
code and diffusers: `timesteps = (0, 22)` with grid 40 is the paper's two-step ImageNet sampler
(sigma 80, then 0.82). Without `timesteps`, diffusers spaces them evenly (k steps: 0, grid // k, ...).
By default (grid = 0) the grid is the model's own: the N Karras levels it was trained on at the end
of its curriculum (CD: the fixed N = 18). A network trained at N discrete noise levels is only
trained there, so levels off its grid can be far worse than levels on it (measured on gaussians25:
CD's 2-step samples covered 6 of 25 modes on a 40-point grid and 25 on its own 18-point grid).
The grid and the levels used, in sigma, are recorded in every row."""

from __future__ import annotations

import copy
import dataclasses
import functools

import torch
from diffusers import CMStochasticIterativeScheduler

from methods.base import LoopSampler, StepRange
from methods.prediction import Prediction
from methods.registry import register_sampler
from methods.samplers.base import SamplerDef
from methods.cm import discretisation


@dataclasses.dataclass(frozen=True)
class CMOptions:
    timesteps: tuple[int, ...] = ()  # Karras-grid indices of the levels, ascending from 0 (sigma_max)
    grid: int = 0  # points of the Karras grid the indices refer to; 0: the model's training grid N(K)
    clip_sample: bool = False  # clip each f(x, sigma) to [-1, 1] (images)


def cm_sample(pred: Prediction, noise: torch.Tensor, *, template: CMStochasticIterativeScheduler,
              steps: int, timesteps: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    sched = _scheduled(template, steps, timesteps, noise.device)
    x = noise * sched.init_noise_sigma
    for t in sched.timesteps:
        out = pred.fn(sched.scale_model_input(x, t), t.to(x.dtype).expand(x.shape[0]))
        x = sched.step(out, t, x, generator=generator).prev_sample
    return pred.decode(x)


def _scheduled(template, steps: int, timesteps: tuple[int, ...], device=None):
    """A copy of the template set to the levels (diffusers takes the indices in descending order)."""
    sched = copy.deepcopy(template)
    if timesteps:
        sched.set_timesteps(timesteps=sorted(timesteps, reverse=True), device=device)
    else:
        sched.set_timesteps(num_inference_steps=steps, device=device)
    return sched


@register_sampler("cm")
class CM(SamplerDef):
    grid_kinds = ()  # its own grid (uniform t, trained steps or the Karras levels it was trained on)
    Options = CMOptions
    kinds = ("consistency",)
    times = ("continuous",)
    default_model = "cm"
    stochastic = True
    summary = "consistency sampling: one step, or k steps re-noised to chosen levels (diffusers CMStochasticIterativeScheduler)"

    @classmethod
    def validate(cls, opts: CMOptions) -> None:
        if opts.grid == 1 or opts.grid < 0:
            raise ValueError(f"cm: grid must be >= 2, or 0 for the model's training grid, got {opts.grid}")
        if opts.timesteps and (list(opts.timesteps) != sorted(set(opts.timesteps)) or opts.timesteps[0] != 0
                               or (opts.grid and opts.timesteps[-1] >= opts.grid)):
            raise ValueError(f"cm: timesteps must be distinct ascending grid indices from 0 (sigma_max) to at most"
                             f" {opts.grid - 1 if opts.grid else 'N - 1'}, got {list(opts.timesteps)}")

    @staticmethod
    def levels_of(model_cfg, opts: CMOptions) -> int:
        """The grid's size: the option, or the model's discretisation at the end of its curriculum."""

        return opts.grid or discretisation(model_cfg, model_cfg.curriculum_steps)

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None) -> StepRange:
        opts = opts or cls.Options()
        grid = cls.levels_of(model_cfg, opts)
        if opts.timesteps:
            k = len(opts.timesteps)
            if opts.timesteps[-1] >= grid:
                raise ValueError(f"cm: timesteps go up to index {opts.timesteps[-1]}, but the model's grid has {grid}"
                                 f" levels (0..{grid - 1}); give smaller indices or set grid")
            return StepRange(k, k, f"the {k} levels given as timesteps")
        return StepRange(1, grid, f"at most the grid's {grid} levels")

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        return 1

    @classmethod
    def build(cls, model, steps: int, opts=None, grid=None) -> LoopSampler:
        opts = cls.check(model, steps, opts)
        pred = model.prediction()
        k = pred.schedule
        grid = cls.levels_of(model.cfg, opts)
        template = CMStochasticIterativeScheduler(num_train_timesteps=grid, sigma_min=k.sigma_min,
                                                  sigma_max=k.sigma_max, sigma_data=k.sigma_data, rho=k.rho,
                                                  clip_denoised=opts.clip_sample)
        probe = _scheduled(template, steps, opts.timesteps)
        settings = {"scheduler": "CMStochasticIterativeScheduler", **{k_: v for k_, v in template.config.items()
                                                                      if not k_.startswith("_")},
                    "grid": grid, "timesteps": list(opts.timesteps), "sigmas": [round(float(s), 5) for s in probe.sigmas[:-1]]}
        loop = functools.partial(cm_sample, pred, template=template, steps=steps, timesteps=opts.timesteps)
        return LoopSampler(loop, steps=steps, nfe=steps, label=f"cm-{steps}", settings=settings)
