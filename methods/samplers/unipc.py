"""UniPC (Zhao et al. 2023): a multistep predictor with a unified corrector that reuses the next
step's network call, so N steps cost N calls (diffusers UniPCMultistepScheduler). Orders 1-3 and
the B(h) variants bh1 / bh2 are options; the default is order 3 with bh2, the configuration
diffusers' documentation recommends for unconditional sampling."""

from __future__ import annotations

import dataclasses

from diffusers import UniPCMultistepScheduler

from methods.registry import register_sampler
from methods.samplers.diffusers_loop import DiffusersSampler
from methods.samplers.dpm_solver import clip_kwargs, sigma_kwargs


@dataclasses.dataclass(frozen=True)
class UniPCOptions:
    order: int = 3
    solver_type: str = "bh2"  # bh1 | bh2
    timestep_spacing: str = "trailing"
    sigmas: str = "default"
    lower_order_final: bool = True
    final_sigmas_type: str = "zero"
    clip_sample: bool = False  # clip each x0 prediction to [-1, 1] (images)


@register_sampler("unipc")
class UniPC(DiffusersSampler):
    Options = UniPCOptions
    scheduler_cls = UniPCMultistepScheduler
    grid_kinds = ("spacing", "sigma")
    kinds = ("eps", "x0", "v")
    order = 3
    summary = "UniPC: multistep predictor-corrector, order 1-3, bh1/bh2 (diffusers UniPCMultistepScheduler)"

    @classmethod
    def expected_order(cls, opts: UniPCOptions, grid) -> int:
        """UniP-p with the corrector UniC reaches order p + 1 (Zhao et al. 2023, Theorem 3.3; diffusers' doc)."""
        return opts.order + 1

    @classmethod
    def validate(cls, opts: UniPCOptions) -> None:
        super().validate(opts)
        if opts.solver_type not in ("bh1", "bh2"):
            raise ValueError(f"unipc: solver_type must be bh1 or bh2, got {opts.solver_type!r}")

    @classmethod
    def scheduler_kwargs(cls, opts: UniPCOptions) -> dict:
        return dict(solver_order=opts.order, solver_type=opts.solver_type, predict_x0=True,
                    timestep_spacing=opts.timestep_spacing, lower_order_final=opts.lower_order_final,
                    final_sigmas_type=opts.final_sigmas_type, steps_offset=0, **clip_kwargs(opts.clip_sample),
                    **sigma_kwargs(opts.sigmas, cls.name))
