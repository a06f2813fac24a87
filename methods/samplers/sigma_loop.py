"""Sampling on a sigma grid: one loop that every sigma-space solver shares (k-diffusion's signature).

    x = noise * sigma_0
    x = solve(D, x, [sigma_0 > ... > sigma_M > 0])     the solver's own steps (methods/sigma.py: D)
    final zero: x = D(x; sigma_M)                         one Euler step from sigma_M to 0 (it is exactly D)
    final none: x is returned at sigma_M                  noise of std sigma_M stays in it

The grid comes from methods/grids.py and is recorded whole in every row (`sigmas`, `final_sigma`), so a
table never compares solvers on different grids without saying so.

A solver here is either hand-written (Euler, Heun, iPNDM: a few lines each on D) or a diffusers multistep
scheduler run on the grid's sigmas (`diffusers_solve`): the scheduler is built as usual, its `sigmas` are
replaced by the grid's (diffusers stores the VE sigma sqrt((1 - abar) / abar) there and reads its
alpha_t = 1 / sqrt(1 + sigma^2), sigma_t = sigma alpha_t from it), it is fed the denoiser's x0 as a
`sample` prediction and walks the VP state x / sqrt(1 + sigma^2). Its own last-step rules
(lower_order_final, euler_at_final, final_sigmas_type) are turned off: the step to 0 is the grid's
`final`, the same for every solver.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Callable, ClassVar

import torch

from methods.base import LoopSampler, Model, StepRange
from methods.grids import Grid, spacing_sigmas
from methods.sigma import Denoiser, denoiser_of
from methods.samplers.base import SamplerDef

MAX_SIGMA_STEPS = 1000
Solve = Callable[..., torch.Tensor]


def sigma_sample(D: Denoiser, noise: torch.Tensor, *, sigmas: torch.Tensor, final: str, solve: Solve,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """The shared loop (module docstring)."""
    positive = sigmas[sigmas > 0]
    x = noise * float(positive[0])
    if final == "own":  # the solver walks the whole grid, its step to 0 included (EDM's Algorithm 2)
        return D.decode(solve(D, x, sigmas, generator=generator))
    x = solve(D, x, positive, generator=generator)
    if final == "zero":
        x = D(x, positive[-1])
    return D.decode(x)


def grid_settings(grid: Grid, sigmas: torch.Tensor, D: Denoiser) -> dict[str, Any]:
    """What a row records of its grid."""
    return {"grid": grid.text, "final": grid.final, "sigmas": [float(f"{s:.6g}") for s in sigmas.tolist()],
            "final_sigma": float(sigmas[-1]), "x_start": "noise * sigma_0", "denoiser": D.describe}


def diffusers_solve(D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, template, state: str = "vp",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """A diffusers scheduler's steps on the grid `sigmas` (all > 0), fed D as a `sample` prediction.
    `state`: 'vp' for the exponential integrators (DPM-Solver++, UniPC, DEIS), 've' for LMS."""
    steps = len(sigmas) - 1
    if steps == 0:
        return x
    sch = copy.deepcopy(template)
    sch.set_timesteps(steps)
    sch.sigmas = sigmas.to(torch.float64).cpu()
    sch.timesteps = torch.arange(steps, 0, -1, dtype=torch.int64)
    sch.num_inference_steps = steps
    scale = (1 + sigmas.double() ** 2).sqrt().tolist()
    s = x / scale[0] if state == "vp" else x
    for i, t in enumerate(sch.timesteps):
        x_ve = s * scale[i] if state == "vp" else s
        s = sch.step(D(x_ve, sigmas[i]), t, s).prev_sample
    return s * scale[-1] if state == "vp" else s


class SigmaGridSampler(SamplerDef):
    """A sampler that runs on sigma grids (and, through diffusers, on the timestep spacings where it has a
    `spacing_build`). Subclasses implement `solve(D, x, sigmas, opts, generator)`."""

    grid_kinds: ClassVar[tuple[str, ...]] = ("sigma",)
    default_grid: ClassVar[str] = "karras"
    owns_final: ClassVar[bool] = False  # True: `solve` gets the whole grid, 0 included, and makes the last step
    kinds: ClassVar[tuple[str, ...]] = ("eps", "x0", "v", "velocity")

    @classmethod
    def solve(cls, D: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, opts: Any,
              generator: torch.Generator | None) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def valid_steps(cls, model_cls: type[Model], model_cfg: Any, opts: Any, grid: Grid | None = None) -> StepRange:
        if cls.grid_of(grid).is_spacing:
            return super().valid_steps(model_cls, model_cfg, opts, grid)
        return StepRange(1, MAX_SIGMA_STEPS, "a sigma grid: at most 1000 steps")

    @classmethod
    def build(cls, model: Model, steps: int, opts: Any = None, grid: Grid | None = None) -> LoopSampler:
        grid = cls.grid_of(grid)
        if grid.is_spacing:
            return cls.spacing_build(model, steps, opts, grid)
        opts = cls.check(model, steps, opts, grid)
        return build_on_sigmas(cls, model, steps, opts, grid)

    grid_kinds: ClassVar[tuple[str, ...]] = ("sigma", "spacing")

    @classmethod
    def spacing_build(cls, model: Model, steps: int, opts: Any, grid: Grid) -> LoopSampler:
        """On a diffusers spacing: the sigmas of its integer timesteps (methods/grids.py spacing_sigmas), then 0."""
        opts = cls.check(model, steps, opts, grid)
        schedule = model.prediction().discrete().schedule if model.kind != "velocity" else None
        if schedule is None:
            raise ValueError(f"{cls.name}: grid {grid.name} spaces a discrete schedule's timesteps; {model.name} has none")
        D = denoiser_of(model)
        sigmas = spacing_sigmas(schedule, grid.name, steps)
        solve = functools.partial(_solve_with, cls, opts)
        loop = functools.partial(sigma_sample, D, sigmas=sigmas, final="own" if cls.owns_final else "zero", solve=solve)
        settings = {**cls.settings(opts), **grid_settings(grid, sigmas, D)}
        return LoopSampler(loop, steps=steps, nfe=cls.nfe(steps, opts, grid), label=f"{cls.name}-{steps}",
                           settings=settings)


def build_on_sigmas(cls, model: Model, steps: int, opts: Any, grid: Grid) -> LoopSampler:
    """A LoopSampler of `cls.solve` on `grid` for `model`'s sigma-space view."""
    try:
        D = denoiser_of(model)
        sigmas = grid.sigmas(steps, D)
    except ValueError as e:
        raise ValueError(f"{cls.name} on {model.name}: {e}") from None
    solve = functools.partial(_solve_with, cls, opts)
    final = "own" if getattr(cls, "owns_final", False) else grid.final
    loop = functools.partial(sigma_sample, D, sigmas=sigmas, final=final, solve=solve)
    settings = {**cls.settings(opts), **grid_settings(grid, sigmas, D)}
    return LoopSampler(loop, steps=steps, nfe=cls.nfe(steps, opts, grid), label=f"{cls.name}-{steps}",
                       settings=settings)


def _solve_with(cls, opts, D, x, sigmas, *, generator=None):
    return cls.solve(D, x, sigmas, opts, generator)
