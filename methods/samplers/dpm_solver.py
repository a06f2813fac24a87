"""DPM-Solver++ (Lu et al. 2022) through diffusers: multistep 2M and 3M, single-step 2S, and the
second-order SDE variant 2M-SDE. All use the data-prediction (x0) form of the exponential
integrator. One network call per step."""

from __future__ import annotations

import dataclasses

from diffusers import DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler

from methods.registry import register_sampler
from methods.samplers.diffusers_loop import DiffusersSampler

SIGMAS = ("default", "karras", "exponential")


@dataclasses.dataclass(frozen=True)
class DPMOptions:
    timestep_spacing: str = "trailing"
    sigmas: str = "default"  # default (the timesteps' own) | karras (rho = 7) | exponential
    lower_order_final: bool = True  # first/second order on the last steps (diffusers: needed below 15 steps)
    euler_at_final: bool = False
    final_sigmas_type: str = "zero"  # zero: the last step lands on the clean sample; sigma_min: on t = 0
    solver_type: str = "midpoint"  # midpoint | heun (second-order correction term)
    clip_sample: bool = False  # clip each x0 prediction to [-1, 1] (images); never for unbounded data


@dataclasses.dataclass(frozen=True)
class DPMSingleOptions:
    sigmas: str = "default"
    lower_order_final: bool = True
    final_sigmas_type: str = "zero"
    solver_type: str = "midpoint"
    clip_sample: bool = False


def clip_kwargs(clip_sample: bool) -> dict:
    """x0 clipped to [-1, 1], as DDIM's `clip_sample`, through diffusers' dynamic thresholding: with
    sample_max_value = 1 its per-sample scale s = clamp(quantile(|x0|), 1, 1) is exactly 1, so the
    threshold is the plain clip clamp(x0, -1, 1)."""
    return dict(thresholding=clip_sample, sample_max_value=1.0, dynamic_thresholding_ratio=0.995)


def sigma_kwargs(sigmas: str, name: str) -> dict:
    if sigmas not in SIGMAS:
        raise ValueError(f"{name}: unknown sigmas {sigmas!r}; choose from {', '.join(SIGMAS)}")
    return dict(use_karras_sigmas=sigmas == "karras", use_exponential_sigmas=sigmas == "exponential")


class _Multistep(DiffusersSampler):
    Options = DPMOptions
    scheduler_cls = DPMSolverMultistepScheduler
    algorithm_type = "dpmsolver++"
    grid_kinds = ("spacing", "sigma")
    kinds = ("eps", "x0", "v")

    @classmethod
    def scheduler_kwargs(cls, opts: DPMOptions) -> dict:
        return dict(solver_order=cls.order, algorithm_type=cls.algorithm_type, solver_type=opts.solver_type,
                    timestep_spacing=opts.timestep_spacing, lower_order_final=opts.lower_order_final,
                    euler_at_final=opts.euler_at_final, final_sigmas_type=opts.final_sigmas_type,
                    use_lu_lambdas=False, steps_offset=0, **clip_kwargs(opts.clip_sample),
                    **sigma_kwargs(opts.sigmas, cls.name))


@register_sampler("dpmpp-2m")
class DPMpp2M(_Multistep):
    order = 2
    summary = "DPM-Solver++(2M): second-order multistep (diffusers DPMSolverMultistepScheduler)"


@register_sampler("dpmpp-3m")
class DPMpp3M(_Multistep):
    order = 3
    summary = "DPM-Solver++(3M): third-order multistep (diffusers DPMSolverMultistepScheduler)"


@register_sampler("dpmpp-2m-sde")
class DPMpp2MSDE(_Multistep):
    order = 2
    stochastic = True
    algorithm_type = "sde-dpmsolver++"
    grid_kinds = ("spacing",)
    summary = "DPM-Solver++(2M) SDE: second-order multistep with fresh noise each step (diffusers)"


@register_sampler("dpmpp-2s")
class DPMpp2S(DiffusersSampler):
    Options = DPMSingleOptions
    scheduler_cls = DPMSolverSinglestepScheduler
    order = 2
    default_grid = "linspace"
    summary = "DPM-Solver++(2S): second-order single-step (diffusers DPMSolverSinglestepScheduler; linspace timesteps)"

    @classmethod
    def scheduler_kwargs(cls, opts: DPMSingleOptions) -> dict:
        return dict(solver_order=2, algorithm_type="dpmsolver++", solver_type=opts.solver_type,
                    lower_order_final=opts.lower_order_final, final_sigmas_type=opts.final_sigmas_type,
                    **clip_kwargs(opts.clip_sample), **sigma_kwargs(opts.sigmas, cls.name))
