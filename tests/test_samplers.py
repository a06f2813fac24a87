"""Every registered sampler against exact denoisers: no training, so any error is the sampler's.

- Gaussian data x_0 ~ N(mu, diag(s^2)): the optimal eps is linear in x_t (methods.schedules.gaussian_eps);
  a correct sampler must return the data's moments, on a discrete schedule and on a continuous one.
- The exact-score oracle of 25-Gaussians: all 25 modes at high quality once the solver has enough steps.
- Convergence: on a smooth 4-mode mixture the error to a reference solution from the same noise falls
  with NFE at about the solver's order.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

import methods
from bench.data.toy2d import gaussians25
from bench.metrics.toy import mixture_metrics
from methods.base import Model
from methods.oracle import Oracle, OracleConfig
from methods.prediction import ContinuousSchedule, Prediction, linear_schedule
from methods.samplers.ddgan import ddgan_sample
from methods.schedules import build_gamma, gaussian_eps, gaussian_eps_vp

MU = torch.tensor([1.0, -0.5])
STD = torch.tensor([0.5, 0.2])
N = 20_000
ODE = [s for s in methods.list_samplers() if not methods.get_sampler(s).stochastic]


class ExactEps(nn.Module):
    """E[eps | x_t] of N(MU, diag(STD^2)) at (fractional) timesteps of a discrete schedule."""

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def forward(self, x, t):
        abar = self.schedule.alpha_bar(torch.as_tensor(t).reshape(-1)).float()
        return gaussian_eps(x, abar.expand(x.shape[0]) if abar.numel() == 1 else abar, MU, STD)


class GaussianModel(Model):
    """Gaussian data's exact eps on DDPM's 1000 linear betas (discrete time)."""

    name = "gaussian"
    Config = OracleConfig

    def __init__(self):
        super().__init__(OracleConfig(), (2,))
        self.schedule = linear_schedule(1000, 1e-4, 0.02)
        self.eps = ExactEps(self.schedule)

    @classmethod
    def num_timesteps(cls, cfg):
        return cfg.T

    def denoisers(self):
        return [self.eps]

    def prediction(self):
        return Prediction(self.eps, "eps", self.schedule)


class ContinuousGaussianModel(GaussianModel):
    """The same data on VDM's fixed linear gamma(t) in continuous time."""

    name = "gaussian-continuous"
    time = "continuous"

    def __init__(self):
        super().__init__()
        # gamma(1) = 10 makes z_1 pure noise (SNR e^-10), as the samplers' N(0, I) start assumes. VDM's
        # gamma_max = 5 leaves alpha_1 = 0.08: an ODE solver started from N(0, I) keeps that offset.
        self.gamma = build_gamma("fixed_linear", -13.3, 10.0)
        self.eps = ExactEpsVP(self.gamma)

    @classmethod
    def num_timesteps(cls, cfg):
        return None

    def prediction(self):
        alpha_0 = torch.sigmoid(-self.gamma(torch.tensor(0.0))).sqrt()
        return Prediction(self.eps, "eps", ContinuousSchedule(self.gamma, {}), decode=lambda z: z / alpha_0)


class ExactEpsVP(nn.Module):
    def __init__(self, gamma):
        super().__init__()
        self.gamma = gamma

    def forward(self, z, t):
        return gaussian_eps_vp(z, self.gamma(torch.as_tensor(t, dtype=z.dtype)), MU, STD)


def budget(name: str, high_order: int = 50) -> int:
    """`high_order` network calls for deterministic solvers of order >= 2, 1000 for first-order or
    stochastic ones."""
    cls = methods.get_sampler(name)
    return high_order if cls.order >= 2 and not cls.stochastic else 1000


def run(name: str, model: Model, nfe: int | None = None, steps: int | None = None, seed: int = 1, n: int = N,
        **options) -> torch.Tensor:
    cls = methods.get_sampler(name)
    opts = cls.Options(**options)
    steps = steps or cls.steps_for_nfe(nfe, type(model), model.cfg, opts)
    noise = torch.randn(n, *model.data_shape, generator=torch.Generator().manual_seed(0))
    return cls.build(model, steps, opts)(noise, generator=torch.Generator().manual_seed(seed)).double()


def moments_match(x: torch.Tensor, tol_mean: float = 0.02, tol_std: float = 0.03) -> None:
    assert torch.allclose(x.mean(0), MU.double(), atol=tol_mean), f"mean {x.mean(0)} != {MU}"
    assert torch.allclose(x.std(0) / STD, torch.ones(2, dtype=torch.float64), atol=tol_std), f"std {x.std(0)} != {STD}"


DISCRETE = [s for s in methods.list_samplers() if methods.get_sampler(s).runs_on(GaussianModel) is None]
CONTINUOUS = [s for s in methods.list_samplers() if methods.get_sampler(s).runs_on(ContinuousGaussianModel) is None]


def test_every_sampler_is_tested_against_an_exact_denoiser():
    """eps samplers here, DDGAN's below, flow samplers on the exact velocity in tests/test_flow.py,
    consistency sampling on the exact consistency function in tests/test_cm.py, MeanFlow's on the exact
    average velocity in tests/test_sigma_solvers.py."""
    from tests.test_cm import CM_SAMPLERS
    from tests.test_flow import FLOW_SAMPLERS

    covered = set(DISCRETE) | set(CONTINUOUS) | set(FLOW_SAMPLERS) | set(CM_SAMPLERS) | {"ddgan"} | {"meanflow"}
    assert covered == set(methods.list_samplers())


@pytest.mark.parametrize("name", DISCRETE)
def test_sampler_recovers_gaussian_moments_on_a_discrete_schedule(name):
    """500 calls for the higher-order solvers: with fewer, the last jump to the clean sample (x0_hat at the
    last timestep, t = T/N - 1) visibly shrinks a 0.2-wide Gaussian (by 5% at 50 steps)."""
    moments_match(run(name, GaussianModel(), budget(name, 500)))


@pytest.mark.parametrize("name", CONTINUOUS)
def test_sampler_recovers_gaussian_moments_on_a_continuous_schedule(name):
    """VDM's own sampler, and the diffusers solvers through the discrete view of gamma(t)."""
    moments_match(run(name, ContinuousGaussianModel(), budget(name, 500)))


@pytest.mark.parametrize("T", [1, 2, 4])
def test_ddgan_sampler_with_the_exact_posterior_generator_recovers_gaussian_moments(T):
    """A generator that draws x_0 ~ p(x_0 | x_{t+1}) exactly (Gaussian data: a Gaussian posterior) makes
    DDGAN's posterior-sampling chain exact for any T."""
    from methods.ddgan import Coefs, make_coefs

    coefs = Coefs(**make_coefs(T, 0.1, 20.0))

    def generator(x_next, t, z):
        abar = coefs.sqrt_abar[t + 1].reshape(-1, 1) ** 2
        gain = abar.sqrt() * STD**2 / (abar * STD**2 + 1 - abar)
        mean = MU + gain * (x_next - abar.sqrt() * MU)
        std = (STD**2 * (1 - abar) / (abar * STD**2 + 1 - abar)).sqrt()
        return mean + std * z

    noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(0))
    moments_match(ddgan_sample(generator, noise, coefs=coefs, nz=2, direct=False,
                               generator=torch.Generator().manual_seed(1)).double())


def test_stochastic_samplers_draw_fresh_noise_and_ode_solvers_do_not():
    model = GaussianModel()
    for name in DISCRETE:
        steps = methods.get_sampler(name).default_steps(GaussianModel, model.cfg)
        a, b = run(name, model, steps=steps, seed=1, n=64), run(name, model, steps=steps, seed=2, n=64)
        assert torch.equal(a, b) != methods.get_sampler(name).stochastic, name


def test_one_ddim_step_from_pure_noise_is_the_posterior_mean():
    """With one step the exact sampler returns E[x_0 | x_T] ~ mu: the mean is right, the spread is
    gone. This is the behaviour the toy benchmark shows for ddim-1."""
    x = run("ddim", GaussianModel(), steps=1)
    assert torch.allclose(x.mean(0), MU.double(), atol=0.02) and (x.std(0) < 0.1 * STD).all()


# --- the exact-score oracle of 25-Gaussians ---------------------------------------------------------

@pytest.fixture(scope="module")
def oracle25() -> Oracle:
    mixture = gaussians25()
    return Oracle(OracleConfig(), (2,), means=mixture.means, std=mixture.std)


def test_oracle_eps_is_minus_sigma_times_the_score(oracle25):
    """eps*(x, t) = -sqrt(1 - abar_t) grad log p_t(x), the noised mixture's density by autograd."""
    mixture = gaussians25()
    x = torch.randn(64, 2, dtype=torch.float64) * 3
    for t in (3, 250.5, 999):
        abar = oracle25.schedule.alpha_bar(torch.tensor([t]))
        var = abar * mixture.std**2 + 1 - abar
        xr = x.clone().requires_grad_(True)
        logp = torch.logsumexp(-(xr[:, None] - abar.sqrt() * mixture.means.double()).pow(2).sum(-1) / (2 * var), 1)
        (score,) = torch.autograd.grad(logp.sum(), xr)
        eps = oracle25.eps(x.float(), torch.tensor(t)).double()
        assert torch.allclose(eps, -(1 - abar).sqrt() * score, rtol=1e-4, atol=1e-4), t


@pytest.mark.parametrize("name", methods.samplers_for("oracle"))
def test_oracle_samples_cover_all_25_modes_at_high_quality(name, oracle25):
    """Second- and higher-order ODE solvers at 50 NFE, first-order and stochastic ones at 1000."""
    x = run(name, oracle25, budget(name), n=2500)
    m = mixture_metrics(x.float(), gaussians25())
    assert m["modes"] == 25 and m["hq_fraction"] >= 0.95, f"{name} at {budget(name)} NFE: {m}"


# --- convergence on a smooth mixture ------------------------------------------------------------------

@pytest.fixture(scope="module")
def smooth():
    """4 modes at (+-1, +-1), std 0.5, and the reference solution: DPM-Solver++(3M) at every one of
    the 1000 timesteps, checked against Heun at 500 steps from the same noise."""
    means = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    model = Oracle(OracleConfig(), (2,), means=means, std=0.5)
    ref = run("dpmpp-3m", model, steps=1000, n=1000)
    assert (ref - run("heun", model, steps=500, n=1000)).norm(dim=1).mean() < 1e-3
    return model, ref


@pytest.mark.parametrize("name", [s for s in ODE if s in methods.samplers_for("oracle")])
def test_error_to_the_reference_falls_at_the_solvers_order(name, smooth):
    """Mean error at NFE ~20 and ~80; the observed order is log(e20 / e80) / log(nfe80 / nfe20).
    First-order solvers: 0.8..1.25; solvers of order >= 2: above that band (>= 1.3). Every solver here
    ends with a jump from its last timestep t = T/N - 1 to the clean sample (x0_hat there); its error
    grows like sigma_last^2, which near t = 0 of linear betas is about beta_start * T / N: a first-order
    term that every solver shares and that dominates once the solver's own error is small (at 160 NFE
    LMS, PNDM and UniPC all fall to slopes below 1). Between 20 and 80 NFE the measured orders are
    1.3-1.5 (DEIS-2, DPM-Solver++ 2S, PNDM), 1.6-2.1 (Heun, DPM-Solver++ 2M/3M, UniPC) and 2.8 (LMS)."""
    model, ref = smooth
    cls = methods.get_sampler(name)
    errors, nfes = [], []
    for budget_ in (20, 80):
        steps = cls.steps_for_nfe(budget_, Oracle, model.cfg, cls.Options())
        errors.append((run(name, model, steps=steps, n=1000) - ref).norm(dim=1).mean().item())
        nfes.append(cls.nfe(steps, cls.Options()))
    order = math.log(errors[0] / errors[1]) / math.log(nfes[1] / nfes[0])
    if cls.order == 1:
        assert 0.8 <= order <= 1.25, f"{name}: observed order {order:.2f} (errors {errors})"
    else:
        assert order >= 1.3, f"{name} (order {cls.order}): observed order {order:.2f} (errors {errors})"


def test_ddim_agrees_with_diffusers_where_its_previous_timestep_is_right_and_converges_where_not(smooth, oracle25):
    """bench's DDIM update equals DDIMScheduler.step when N divides T. When it does not, diffusers'
    previous timestep t - T // N is not the next listed one (diffusers #11347, #12633) and its error
    to the reference grows from N = 40 to N = 80, while bench's keeps falling. If diffusers fixes this,
    the second half fails: then methods/samplers/ddim.py can go back to DDIMScheduler.step."""
    from diffusers import DDIMScheduler

    model, _ = smooth
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))

    def diffusers_ddim(steps):
        sched = DDIMScheduler(**model.schedule.diffusers, timestep_spacing="trailing", set_alpha_to_one=True,
                              steps_offset=0, clip_sample=False)
        sched.set_timesteps(steps)
        x = noise
        for t in sched.timesteps:
            x = sched.step(model.eps(x, t), t, x).prev_sample
        return x.double()

    assert torch.allclose(diffusers_ddim(40), run("ddim", model, steps=40, n=1000), atol=1e-5)
    model = oracle25  # 25-Gaussians: the sharp modes make the misplaced steps show
    ref = run("dpmpp-3m", model, steps=1000, n=1000)
    err = {(who, s): (f(s) - ref).norm(dim=1).mean().item() for s in (40, 80)
           for who, f in (("diffusers", diffusers_ddim), ("bench", lambda k: run("ddim", model, steps=k, n=1000)))}
    assert err["bench", 80] < 0.7 * err["bench", 40]
    assert err["diffusers", 80] > err["diffusers", 40]


def test_sampler_options_are_recorded_and_change_the_samples():
    model = GaussianModel()
    cls = methods.get_sampler("dpmpp-2m")
    default = cls.build(model, 10, None)
    karras = cls.build(model, 10, cls.Options(sigmas="karras"))
    assert default.settings["use_karras_sigmas"] is False and karras.settings["use_karras_sigmas"] is True
    assert default.settings["timestep_spacing"] == "trailing" and default.settings["solver_order"] == 2
    assert not torch.equal(run("dpmpp-2m", model, steps=10, n=64), run("dpmpp-2m", model, steps=10, n=64,
                                                                          sigmas="karras"))
    with pytest.raises(ValueError, match="unknown sigmas 'cosine'"):
        cls.build(model, 10, cls.Options(sigmas="cosine"))
    assert dataclasses.asdict(methods.get_sampler("ddim").Options()) == {"eta": 0.0, "timestep_spacing": "trailing",
                                                                         "clip_sample": False}


class FarEps(nn.Module):
    """An eps far off the data (x0 predictions around +-20): what an undertrained image model gives
    at the noisiest steps, where x0 = (x_t - sqrt(1 - a) eps) / sqrt(a) amplifies eps errors."""

    def forward(self, x, t):
        return -3.0 * torch.sign(x) - 0.5 * x


CLIPPING = [s for s in methods.list_samplers() if methods.get_sampler(s).runs_on(GaussianModel) is None
            and "clip_sample" in {f.name for f in dataclasses.fields(methods.get_sampler(s).Options)}]


def test_every_diffusion_solver_with_an_x0_can_clip_it():
    assert {"ddpm", "ddim", "dpmpp-2m", "dpmpp-3m", "dpmpp-2s", "dpmpp-2m-sde", "unipc", "deis"} <= set(CLIPPING)


@pytest.mark.parametrize("name", CLIPPING)
def test_clip_sample_keeps_every_x0_and_the_sample_in_the_image_range(name):
    model = GaussianModel()
    model.eps, model.data_shape = FarEps(), (1, 4, 4)
    steps = 1000 if name == "ddpm" else 10
    free = run(name, model, steps=steps, n=256)
    clipped = run(name, model, steps=steps, n=256, clip_sample=True)
    assert free.abs().max() > 1.5, name
    # DEIS ends on t = 0 (sigma 0.01), not on the clean x0: its eps-form step keeps sigma_0 times its
    # extrapolated eps (about 4 here)
    bound = 1.0 + (0.01 * 6 if name == "deis" else 1e-5)
    assert clipped.abs().max() <= bound, f"{name}: |x| = {clipped.abs().max():.3f} with clip_sample"


def test_clip_sample_on_vectors_is_a_clear_error():
    with pytest.raises(ValueError, match="dpmpp-2m: clip_sample clips images"):
        run("dpmpp-2m", GaussianModel(), steps=10, n=8, clip_sample=True)
