"""PNDM / PLMS (Liu et al. 2022) through diffusers' PNDMScheduler with skip_prk_steps = True: a
fourth-order linear multistep on the DDIM transfer, warmed up without the Runge-Kutta steps
(Stable Diffusion's setting). N steps make N + 1 network calls (the first step is taken twice).

Spacing: PNDMScheduler moves from t to t - T // N, which is the next listed timestep only with
"leading" spacing (or when N divides T), so "leading" is the default; it starts at (N - 1)(T // N)
rather than at T - 1."""

from __future__ import annotations

import dataclasses

from diffusers import PNDMScheduler

from methods.base import StepRange
from methods.registry import register_sampler
from methods.samplers.diffusers_loop import DiffusersSampler


@dataclasses.dataclass(frozen=True)
class PNDMOptions:
    timestep_spacing: str = "leading"


@register_sampler("pndm")
class PNDM(DiffusersSampler):
    Options = PNDMOptions
    scheduler_cls = PNDMScheduler
    order = 4
    default_grid = "leading"
    summary = "PNDM/PLMS: fourth-order multistep, N + 1 calls for N steps (diffusers PNDMScheduler, skip_prk_steps)"

    @classmethod
    def grid_of(cls, grid):
        """PNDMScheduler steps from t to t - T // N, the next listed timestep only on leading spacing."""
        grid = super().grid_of(grid)
        if grid is not None and grid.name != "leading":
            raise ValueError(f"pndm runs on leading timesteps only (PNDMScheduler's t - T // N step lands on the listed"
                             f" timesteps only there), not on grid {grid.text}")
        return grid

    @classmethod
    def nfe(cls, steps: int, opts, grid=None) -> int:
        return steps + 1

    @classmethod
    def valid_steps(cls, model_cls, model_cfg, opts, grid=None) -> StepRange:
        rng = super().valid_steps(model_cls, model_cfg, opts, grid)
        return StepRange(2, rng.hi, "PLMS needs at least 2 steps; " + rng.why)

    @classmethod
    def scheduler_kwargs(cls, opts: PNDMOptions) -> dict:
        return dict(skip_prk_steps=True, set_alpha_to_one=True, timestep_spacing=opts.timestep_spacing, steps_offset=0)
