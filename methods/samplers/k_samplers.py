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


class AlsoOnFlows:
    """Mixin: on a velocity model, build the flow ODE loop of the same name instead."""

    kinds = ("eps", "velocity")

    @classmethod
    def build(cls, model, steps: int, opts=None):
        if model.kind != "velocity":
            return super().build(model, steps, opts)
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


@register_sampler("euler")
class Euler(AlsoOnFlows, DiffusersSampler):
    Options = SigmaOptions
    scheduler_cls = EulerDiscreteScheduler
    summary = "Euler on the probability-flow ODE in sigma (diffusers EulerDiscreteScheduler); on flows, Euler in t"

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
class Heun(AlsoOnFlows, DiffusersSampler):
    Options = SigmaOptions
    scheduler_cls = HeunDiscreteScheduler
    order = 2
    summary = "Heun (EDM Algorithm 1): 2N - 1 network calls for N steps (diffusers HeunDiscreteScheduler; on flows, in t)"

    @classmethod
    def nfe(cls, steps: int, opts) -> int:
        return 2 * steps - 1

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
    summary = "Linear multistep (k-diffusion LMS, order 4 by default; diffusers LMSDiscreteScheduler)"

    @classmethod
    def scheduler_kwargs(cls, opts: LMSOptions) -> dict:
        return dict(timestep_spacing=opts.timestep_spacing, steps_offset=0, **sigma_kwargs(opts.sigmas, cls.name))

    @classmethod
    def step_kwargs(cls, opts: LMSOptions) -> dict:
        return dict(order=opts.order)
