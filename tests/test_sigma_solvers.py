"""Sigma-space solvers on exact denoisers: strict orders, the grid axis, iPNDM, the data oracle.

The reference solution is bench/measure/orders.py's (DOP853 in log sigma, rtol 1e-10) from the same noise; the
measured order is the slope over the three largest of NFE 10, 20, 40, 80 on a smooth 4-mode mixture
(std 0.5), where the asymptotic regime holds. Two solvers measure below their textbook order, and the
test pins what they measure so that a further drop still fails:
- dpmpp-3m: about 2 beyond 40 NFE (3.0-3.8 between 10 and 40). The same with k-diffusion's 3M formula
  and with an exactly integrated start, so it is neither diffusers' code nor the warm-up steps.
- ipndm: its expected order is 2, not 4 (SamplerDef.expected_order): diff-sampler's equal-step
  coefficients give order 2 on any grid whose steps vary; the exact-weight form is LMS.
"""

from __future__ import annotations

import pytest
import torch

import methods
from bench.data.toy2d import gaussians25
from bench.measure.orders import _ode_reference, fit_order
from methods.grids import Grid, split_top_level
from methods.oracle import Oracle, OracleConfig
from methods.sigma import denoiser_of

N = 200
NFES = (10, 20, 40, 80)
SIGMA_SOLVERS = [s for s in methods.list_samplers()
                 if "sigma" in methods.get_sampler(s).grid_kinds and not methods.get_sampler(s).stochastic]
SLOW = {"lms": (20, 40, 80, 160)}  # reaches its asymptotic regime later (3.2 at 20-40, 3.7 at 40-80)
MEASURED = {"dpmpp-3m": (2, 3)}  # between its asymptotic 2 and its textbook 3, as measured (module docstring)


@pytest.fixture(scope="module")
def smooth():
    means = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    return Oracle(OracleConfig(), (2,), means=means, std=0.5)


def _errors(name: str, model, grid: Grid, opts=None, nfes=NFES) -> tuple[list[int], list[float]]:
    cls = methods.get_sampler(name)
    opts = opts or cls.Options()
    noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    D, refs, out_nfe, out_err = denoiser_of(model), {}, [], []
    for budget in nfes:
        steps = cls.steps_for_nfe(budget, type(model), model.cfg, opts, grid)
        sampler = cls.build(model, steps, opts, grid)
        sig = [s for s in sampler.settings["sigmas"] if s > 0]
        key = (sig[0], sampler.settings["final_sigma"])
        if key not in refs:
            refs[key] = _ode_reference(D, noise * sig[0], sig[0], sampler.settings["final_sigma"])
        x = sampler(noise.float(), generator=torch.Generator()).double()
        out_nfe.append(sampler.nfe)
        out_err.append((x - refs[key]).norm(dim=1).mean().item())
    return out_nfe, out_err


@pytest.mark.parametrize("name", SIGMA_SOLVERS)
def test_every_sigma_solver_converges_at_its_order_on_the_karras_grid(name, smooth):
    """Within +-0.35 of the order theory promises (or of the pinned measurement above), karras grid with
    sigma_min 0.002 and one Euler step to 0; a solver whose order drops by one fails."""
    cls = methods.get_sampler(name)
    grid = Grid.parse("karras")
    nfe, err = _errors(name, smooth, grid, nfes=SLOW.get(name, NFES))
    order, _ = fit_order(nfe, err)
    lo, hi = MEASURED.get(name, (cls.expected_order(cls.Options(), grid),) * 2)
    assert lo - 0.35 <= order <= hi + 0.35, f"{name}: order {order:.2f}, expected {lo}..{hi} (errors {err} at {nfe})"


def test_ipndm_with_exact_weights_would_be_lms(smooth):
    """The variable-step form of iPNDM (Lagrange weights on the actual sigmas) is k-diffusion's LMS: on a sigma
    grid, `lms` is that method, and it keeps its fourth order where iPNDM's equal-step weights give 2."""
    nfe, err = _errors("lms", smooth, Grid.parse("karras"), nfes=(20, 40, 80, 160))
    assert fit_order(nfe, err)[0] >= 3.5


def test_final_none_stops_at_sigma_min_and_says_so(smooth):
    cls = methods.get_sampler("dpmpp-2m")
    sampler = cls.build(smooth, 10, None, Grid.parse("karras(final=none,sigma_min=0.01)"))
    assert sampler.settings["final_sigma"] == pytest.approx(0.01) and len(sampler.settings["sigmas"]) == 11
    zero = cls.build(smooth, 10, None, Grid.parse("karras"))
    assert zero.settings["final_sigma"] == 0 and len(zero.settings["sigmas"]) == 11 and zero.nfe == 10


def test_deis_on_a_spacing_records_that_it_stops_short_of_zero(smooth):
    row = methods.get_sampler("deis").build(smooth, 10, None, Grid.parse("trailing")).settings
    assert row["final_sigma"] == pytest.approx(0.01, rel=0.01)  # sigma(t = 0) of linear betas
    assert methods.get_sampler("deis").build(smooth, 10, None, Grid.parse("karras")).settings["final_sigma"] == 0


def test_grid_text_is_canonical_and_bad_grids_are_one_line_errors():
    assert Grid.parse("karras(rho=7)").text == "karras" == Grid.parse(" EDM ").text
    assert Grid.parse("karras(final=none, rho=5)").text == "karras(final=none,rho=5)"
    assert split_top_level("karras(rho=5,final=none),trailing") == ["karras(rho=5,final=none)", "trailing"]
    for bad, msg in [("cosine", "unknown grid"), ("karras(rho=-1)", "positive"), ("karras(tau=1)", "no parameter"),
                     ("trailing(rho=2)", "takes no parameters"), ("karras(final=maybe)", "final must be"),
                     ("karras(sigma_min=5,sigma_max=1)", "below sigma_max")]:
        with pytest.raises(ValueError, match=msg):
            Grid.parse(bad)
    with pytest.raises(ValueError, match="empty item"):
        split_top_level("karras,,trailing")


def test_sigma_grids_have_their_endpoints_and_are_decreasing(smooth):
    D = denoiser_of(smooth)
    for text in ("karras", "logsnr", "time-uniform"):
        s = Grid.parse(text).sigmas(12, D)
        assert s[0] == pytest.approx(80) and s[-2] == pytest.approx(0.002) and s[-1] == 0 and len(s) == 13
        assert bool((s[:-1] > s[1:]).all()), text


def test_integer_timestep_samplers_refuse_sigma_grids_in_one_line(smooth):
    for name in ("ddim", "pndm", "euler-a"):
        with pytest.raises(ValueError, match="integer timesteps"):
            methods.get_sampler(name).build(smooth, 10, None, Grid.parse("karras"))


def test_the_sigma_view_of_the_eps_oracle_matches_its_exact_denoiser():
    """k-diffusion's DiscreteEpsDDPMDenoiser idea on the oracle's eps equals the closed-form D at integer
    timesteps' sigmas (the interpolation is exact there)."""
    mixture = gaussians25()
    model = Oracle(OracleConfig(), (2,), means=mixture.means, std=mixture.std)
    view, exact = denoiser_of(model, own=False), denoiser_of(model)
    x = torch.randn(64, 2, dtype=torch.float64) * 3
    abar = model.schedule.alphas_cumprod
    for t in (10, 500, 990):
        sigma = float(((1 - abar[t]) / abar[t]).sqrt())
        assert torch.allclose(view(x, sigma).double(), exact(x, sigma).double(), atol=1e-4), t


def test_the_ideal_denoiser_is_the_posterior_mean_of_its_images():
    from methods.data_oracle import DataOracle, DataOracleConfig

    images = torch.rand(50, 1, 4, 4) * 2 - 1
    model = DataOracle(DataOracleConfig(n_images=50), (1, 4, 4), images=images)
    x = torch.randn(7, 1, 4, 4, dtype=torch.float64)
    for sigma in (0.05, 0.7, 20.0):
        logw = -((x.reshape(7, 1, -1) - images.double().reshape(1, 50, -1)) ** 2).sum(-1) / (2 * sigma**2)
        expected = (torch.softmax(logw, 1) @ images.double().reshape(50, -1)).reshape(x.shape)
        assert torch.allclose(denoiser_of(model)(x, sigma).double(), expected, atol=1e-10)
    # small sigma: D snaps to the nearest image; an exact sampler returns training images
    assert model.nearest_distance(denoiser_of(model)(x, 1e-3)).max() < 1e-6
    # the eps view agrees with the denoiser
    t = torch.tensor([300])
    abar = model.schedule.alpha_bar(t)
    sigma = float(((1 - abar) / abar).sqrt())
    x_vp = x * abar.sqrt()
    eps = model.eps(x_vp, t)
    assert torch.allclose((x_vp - (1 - abar).sqrt() * eps) / abar.sqrt(), denoiser_of(model)(x, sigma).double(),
                          atol=1e-8)


def test_naming_a_samplers_default_spacing_on_the_axis_changes_no_sample():
    """Committed suites sampled without a grid axis; naming their default spacing (trailing; pndm leading,
    dpmpp-2s linspace) as the axis must give the very same samples, so their numbers stand."""
    mixture = gaussians25()
    model = Oracle(OracleConfig(), (2,), means=mixture.means, std=mixture.std)
    noise = torch.randn(300, 2, generator=torch.Generator().manual_seed(3))
    for name in methods.samplers_for("oracle"):
        cls = methods.get_sampler(name)
        if "spacing" not in cls.grid_kinds:
            continue
        steps = 12 if name != "ddpm" else 1000
        default = cls.build(model, steps, None)(noise, generator=torch.Generator().manual_seed(1))
        named = cls.build(model, steps, None, Grid.parse(cls.default_grid))(noise, generator=torch.Generator().manual_seed(1))
        assert torch.equal(default, named), name


def test_edm_heun_is_heun_on_edms_grid_and_edm_sde_without_churn_is_edm_heun(smooth):
    noise = torch.randn(100, 2, generator=torch.Generator().manual_seed(5))
    grid = Grid.parse("karras")
    a = methods.get_sampler("edm-heun").build(smooth, 18, None, grid)
    b = methods.get_sampler("heun").build(smooth, 18, None, grid)
    sde = methods.get_sampler("edm-sde")
    c = sde.build(smooth, 18, sde.Options(S_churn=0.0), grid)
    assert a.nfe == b.nfe == c.nfe == 35
    xa, xb, xc = (s(noise, generator=torch.Generator().manual_seed(1)) for s in (a, b, c))
    assert torch.allclose(xa, xb, atol=1e-6) and torch.equal(xa, xc)
    churned = sde.build(smooth, 18, None, grid)(noise, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(churned, xa)


def test_edm_preconditioning_is_exact_at_its_boundary():
    """c_skip -> 1 and c_out -> 0 as sigma -> 0: D(x, sigma) -> x whatever the network says."""
    from methods.edm import EDM, EDMConfig
    from methods.nets import NetConfig

    model = EDM(EDMConfig(sigma_data=0.5, net=NetConfig(hidden=16, depth=1, emb_dim=8)), (2,))
    x = torch.randn(8, 2)
    assert torch.allclose(model.D(x, torch.full((8,), 1e-6)), x, atol=1e-5)
    loss = model(x, phase="model", step=0)["loss"]
    assert torch.isfinite(loss) and loss.ndim == 0


def test_meanflow_jvp_target_matches_finite_differences():
    """d/dt u(z_t, r, t) along the path (dz = v dt) by the JVP equals a central difference (float32, as the
    networks' sinusoidal embedding computes)."""
    from methods.meanflow import AverageVelocity, meanflow_target
    from methods.nets.mlp import TimeMLP

    torch.manual_seed(0)
    # t_scale 1: an embedding smooth enough in t for a float32 central difference (the model's 1000 makes
    # sin(1000 t) terms that a difference step cannot resolve)
    u_fn = AverageVelocity(TimeMLP(2, hidden=32, depth=2, emb_dim=16, t_scale=1.0, two_times=True))
    z, v = torch.randn(16, 2), torch.randn(16, 2)
    t, r = torch.rand(16) * 0.8 + 0.1, torch.rand(16) * 0.1
    u, target = meanflow_target(u_fn, z, r, t, v)
    h = 1e-2
    with torch.no_grad():
        dudt = (u_fn(z + h * v, r, t + h) - u_fn(z - h * v, r, t - h)) / (2 * h)
    assert torch.allclose(u, u_fn(z, r, t))
    fd = v - (t - r)[:, None] * dudt
    assert torch.allclose(target, fd, rtol=1e-3, atol=1e-3), (target - fd).abs().max()
    assert (target - v).abs().max() > 1e-2  # the JVP term is not negligible here
    assert not target.requires_grad


def test_meanflow_rejects_a_ratio_outside_the_unit_interval():
    from methods.meanflow import MeanFlow, MeanFlowConfig

    with pytest.raises(ValueError, match=r"ratio .* must be in \[0, 1\]"):
        MeanFlow.check_config(MeanFlowConfig(ratio=1.5))


def test_ect_starts_from_its_edm_base_and_halves_dt_by_stages():
    from methods.ect import ECT, ECTConfig
    from methods.edm import EDM, EDMConfig
    from methods.nets import NetConfig

    net = NetConfig(hidden=16, depth=1, emb_dim=8)
    base = EDM(EDMConfig(sigma_data=2.8, net=net), (2,))
    ect = ECT(ECTConfig(sigma_data=2.8, net=net, curriculum_steps=400, stages=4), (2,))
    assert ECT.parents(ect.cfg)["base"][0] == "edm"
    ect.attach_parents({"base": base}, run_dir=None, seed=0, log=lambda _: None)
    x, sigma = torch.randn(32, 2), torch.full((32,), 3.0, dtype=torch.float64)
    with torch.no_grad():  # f = D but for c_skip / c_out's sigma_min offset
        assert torch.allclose(ect.consistency(ect.net, x, sigma), base.D(x, sigma.float()), atol=1e-2)
    t = torch.tensor([1.0], dtype=torch.float64)
    n = 1 + 8 * torch.sigmoid(-t).item()  # n(1) = 3.15: dt = t (r = 0, clamped to sigma_min) while n / q^(s+1) > 1
    assert [float(ect.dt_ratio(t, k)) for k in (0, 100, 200, 399, 5000)] == pytest.approx(
        [1.0, n / 4, n / 8, n / 16, n / 16])
    with pytest.raises(ValueError, match="must be edm"):
        ECT.check_config(ECTConfig(base="ddpm"))


class ExactAverageVelocity(torch.nn.Module):
    """u(z, r, t) of N(m, s^2 I) data on the linear path: the flow map is affine, z_r = m_r + (sd_r / sd_t)(z - m_t)
    with m_t = (1 - t) m, sd_t = sqrt((1 - t)^2 s^2 + t^2), so u = (z - z_r) / (t - r)."""

    def __init__(self, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, z, r, t):
        def m(v):
            return (1 - v)[:, None] * self.mean

        def sd(v):
            return ((1 - v) ** 2 * self.std**2 + v**2).sqrt()[:, None]

        z_r = m(r) + sd(r) / sd(t) * (z - m(t))
        return (z - z_r) / (t - r)[:, None]


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_meanflow_sampler_with_the_exact_average_velocity_is_exact_at_any_step_count(steps):
    from methods.meanflow import MeanFlow, MeanFlowConfig
    from methods.nets import NetConfig

    model = MeanFlow(MeanFlowConfig(net=NetConfig(hidden=8, depth=1, emb_dim=8)), (2,))
    model.u = ExactAverageVelocity(1.5, 0.5)
    z = torch.randn(2000, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sampler = methods.get_sampler("meanflow").build(model, steps, None)
    assert sampler.nfe == steps
    x = sampler(z, generator=torch.Generator())
    assert torch.allclose(x, 1.5 + 0.5 * z, atol=1e-10)
