"""The sigma-parameterised samplers of Karras et al. 2022 / k-diffusion, through diffusers:
Euler, Euler ancestral, Heun (two network calls per step but the last: N steps = 2N - 1 calls)
and the linear multistep LMS. They integrate in x / alpha (variance exploding form): the loop
starts at noise * init_noise_sigma and feeds the network scale_model_input(x, t).

`euler` and `heun` also run on flow models (velocity prediction): there they are the plain ODE
loops of methods/samplers/flow.py on a uniform time grid, with the same call counts (N; 2N - 1),
and the sigma options do not apply."""

from __future__ import annotations

import dataclasses

from diffusers import (EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler,
                       LMSDiscreteScheduler)

from methods.registry import register_sampler
from methods.samplers.diffusers_loop import DiffusersSampler
from methods.samplers.dpm_solver import sigma_kwargs
from methods.samplers.flow import build_on_flow
from methods.sigma import heun_step, ode_derivative


class AlsoOnFlows:
    """Mixin: on a velocity model without a grid, build the flow ODE loop of the same name instead (uniform
    in t); on a sigma grid, run on the flow's sigma-space view like any model."""

    kinds = ("eps", "x0", "v", "velocity")
    grid_kinds = ("spacing", "sigma")

    @classmethod
    def build(cls, model, steps: int, opts=None, grid=None):
        if model.kind != "velocity" or (grid is not None and not grid.is_spacing):
            return super().build(model, steps, opts, grid)
        if grid is not None:
            raise ValueError(f"{cls.name} on a flow model: grid {grid.text} is a DDPM timestep spacing; use a sigma"
                             " grid (karras, logsnr, time-uniform) or none (uniform t)")
        opts = cls.check(model, steps, opts)
        if opts != cls.Options():
            raise ValueError(f"{cls.name} on a flow model integrates a uniform time grid: its options"
                             " (timestep_spacing, sigmas) apply to eps models only")
        return build_on_flow(cls.name, model, steps, cls.nfe(steps, opts))


@dataclasses.dataclass(frozen=True)
class SigmaOptions:
    timestep_spacing: str = "trailing"  # integer timesteps (linspace gives fractional ones)
    sigmas: str = "default"  # default | karras (rho = 7) | exponential


@dataclasses.dataclass(frozen=True)
class SpacingOptions:
    timestep_spacing: str = "trailing"


@dataclasses.dataclass(frozen=True)
class LMSOptions:
    timestep_spacing: str = "trailing"
    sigmas: str = "default"
    order: int = 4  # past derivatives combined


class HandWritten:
    """Mixin: on a sigma grid the solver is the few lines of `solve` below, not a diffusers scheduler."""

    @classmethod
    def settings(cls, opts) -> dict:
        return {"solver": f"{cls.name} on D(x; sigma), methods/samplers/k_samplers.py"}


@register_sampler("euler")
class Euler(AlsoOnFlows, HandWritten, DiffusersSampler):
    Options = SigmaOptions
    scheduler_cls = EulerDiscreteScheduler
    summary = ("Euler on the probability-flow ODE in sigma (on a sigma grid, by hand; on a spacing, diffusers"
               " EulerDiscreteScheduler); on flows without a grid, Euler in t")

    @classmethod
    def solve(cls, D, x, sigmas, opts, generator):
        """x_{i+1} = x_i + (s_{i+1} - s_i) (x_i - D(x_i; s_i)) / s_i."""
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            x = x + (s_next - s) * ode_derivative(D, x, s)
        return x

    @classmethod
    def scheduler_kwargs(cls, opts: SigmaOptions) -> dict:
        return dict(timestep_spacing=opts.timestep_spacing, final_sigmas_type="zero", interpolation_type="linear",
                    timestep_type="discrete", steps_offset=0, **sigma_kwargs(opts.sigmas, cls.name))

    @classmethod
    def step_kwargs(cls, opts) -> dict:
        return dict(s_churn=0.0, s_tmin=0.0, s_tmax=float("inf"), s_noise=1.0)


@register_sampler("euler-a")
class EulerAncestral(DiffusersSampler):
    Options = SpacingOptions
    scheduler_cls = EulerAncestralDiscreteScheduler
    stochastic = True
    summary = "Euler ancestral: Euler steps with fresh noise each step (diffusers EulerAncestralDiscreteScheduler)"

    @classmethod
    def scheduler_kwargs(cls, opts: SpacingOptions) -> dict:
        return dict(timestep_spacing=opts.timestep_spacing, steps_offset=0)


@register_sampler("heun")
class Heun(AlsoOnFlows, HandWritten, DiffusersSampler):
    Options = SigmaOptions
    scheduler_cls = HeunDiscreteScheduler
    order = 2
    summary = ("Heun (EDM Algorithm 1): 2N - 1 network calls for N steps, 2N on a grid with final none (by hand on"
               " a sigma grid; diffusers HeunDiscreteScheduler on a spacing; on flows, in t)")

    @classmethod
    def nfe(cls, steps: int, opts, grid=None) -> int:
        return 2 * steps if grid is not None and grid.final == "none" else 2 * steps - 1

    @classmethod
    def solve(cls, D, x, sigmas, opts, generator):
        """EDM Algorithm 1 on sigmas that stay above 0 (the grid's `final` makes the step to 0)."""
        for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist()):
            x = heun_step(D, x, s, s_next)
        return x

    @classmethod
    def scheduler_kwargs(cls, opts: SigmaOptions) -> dict:
        return dict(timestep_spacing=opts.timestep_spacing, clip_sample=False, steps_offset=0,
                    **sigma_kwargs(opts.sigmas, cls.name))


@register_sampler("lms")
class LMS(DiffusersSampler):
    Options = LMSOptions
    scheduler_cls = LMSDiscreteScheduler
    order = 4
    max_order = 4
    grid_kinds = ("spacing", "sigma")
    kinds = ("eps", "x0", "v")
    sigma_state = "ve"
    summary = "Linear multistep (k-diffusion LMS, order 4 by default; diffusers LMSDiscreteScheduler)"

    @classmethod
    def scheduler_kwargs(cls, opts: LMSOptions) -> dict:
        return dict(timestep_spacing=opts.timestep_spacing, steps_offset=0, **sigma_kwargs(opts.sigmas, cls.name))

    @classmethod
    def step_kwargs(cls, opts: LMSOptions) -> dict:
        return dict(order=opts.order)
