"""iPNDM: the improved pseudo-numerical method of Zhang & Chen (2023, the DEIS paper), as zju-pi/diff-sampler
runs it on EDM's sigma grid. One network call per step.

On dx/dsigma = d(x; sigma) = (x - D(x; sigma)) / sigma it takes an Adams-Bashforth combination of the last
derivatives with the fixed (equal-step) coefficients, lowering the order while the history is short:
    order 1: d_n
    order 2: (3 d_n - d_{n-1}) / 2
    order 3: (23 d_n - 16 d_{n-1} + 5 d_{n-2}) / 12
    order 4: (55 d_n - 59 d_{n-1} + 37 d_{n-2} - 9 d_{n-3}) / 24
    x_{n+1} = x_n + (sigma_{n+1} - sigma_n) * combination
No diffusers scheduler implements it on a sigma grid (PNDMScheduler is PLMS on DDPM's integer timesteps
with Runge-Kutta warm-up), so it is written here.

Measured on the exact score (tests/test_sigma_solvers.py, results/toy-solvers-orders): the equal-step
coefficients make it a second-order method on any grid whose steps vary (karras, logsnr; order 2.0-2.1
between 20 and 80 NFE), whatever the starting steps (a fourth-order Runge-Kutta start changes nothing).
Its variable-step form, the Lagrange polynomial through the past sigmas integrated exactly, is k-diffusion's
linear multistep method: `lms` on a sigma grid, which measures order 3.5-3.7 there (identical errors).
"""

from __future__ import annotations

import dataclasses

from methods.registry import register_sampler
from methods.samplers.sigma_loop import SigmaGridSampler
from methods.sigma import ode_derivative

AB = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


@dataclasses.dataclass(frozen=True)
class IPNDMOptions:
    order: int = 4  # the highest order used once the history is long enough (diff-sampler's max_order)


@register_sampler("ipndm")
class IPNDM(SigmaGridSampler):
    Options = IPNDMOptions
    order = 4
    summary = "iPNDM: Adams-Bashforth on the denoiser's derivative in sigma, order up to 4 (diff-sampler; by hand)"

    @classmethod
    def validate(cls, opts: IPNDMOptions) -> None:
        if opts.order not in AB:
            raise ValueError(f"ipndm: order must be in 1..4, got {opts.order}")

    @classmethod
    def expected_order(cls, opts: IPNDMOptions, grid) -> int:
        """Equal-step coefficients on a grid whose steps vary: order 2 (module docstring)."""
        return min(opts.order, 2)

    @classmethod
    def solve(cls, D, x, sigmas, opts, generator):
        history = []  # d_n, d_{n-1}, ...
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            history = [ode_derivative(D, x, s)] + history[:opts.order - 1]
            x = x + (s_next - s) * sum(c * d for c, d in zip(AB[len(history)], history))
        return x

