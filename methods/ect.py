"""Easy consistency tuning (ECT; Geng, Pokle, Luo, Lin, Kolter 2024, "Consistency Models Made Easy";
locuslab/ect): a consistency model initialised from a trained EDM run and tuned in continuous time, with
no teacher ODE step and no JVP.

code            paper / reference code (ECMLoss)
base            the `edm` run this model starts from (a parent: its run id is part of this run's id); its
                network F and EDM's c_in / c_noise are kept, the boundary-condition scalings of
                methods/cm.py replace c_skip / c_out (the same except within ~sigma_min of 0)
t               ln t ~ N(P_mean, P_std^2), P_mean = -1.1, P_std = 2.0
r               t (1 - n(t) / q^(s + 1)), n(t) = 1 + kk sigmoid(-b t) ('sigmoid' adjustment), q = 2,
                kk = 8, b = 1; the stage s = floor(k / d) counts from 0 (so the first stage already has
                dt / t = n(t) / q, as the reference's update_schedule) and stops at stages - 1; d =
                curriculum_steps / stages training steps per stage; r is clamped to sigma_min, where
                f(x, sigma_min) = x
x_t, x_r        y + t n and y + r n with the same noise n
loss            w(t, r) d(f_theta(x_t, t), sg f_theta(x_r, r)), w = 1 / (t - r) (ECT's adaptive weight in
                its simplest form), d pseudo-Huber (c = 0.00054 sqrt(dim) sigma_data / 0.5; `distance = "l2"`
                for ECT's c = 0)
sampling        the `cm` sampler at 1 and 2 steps (diffusers' CMStochasticIterativeScheduler), on the
                Karras levels of `N`
"""

from __future__ import annotations

import dataclasses

import torch

from methods.cm import CMConfig, ConsistencyModel, _bcast
from methods.registry import register_model
from methods.registry import get_model


@dataclasses.dataclass(frozen=True)
class ECTConfig(CMConfig):
    mode: str = "tune"  # ECT (its own mode of the consistency model)
    base: str = "edm"  # the model whose run (same preset) this one starts from
    p_mean: float = -1.1
    p_std: float = 2.0
    q: float = 2.0
    kk: float = 8.0  # n(t) = 1 + kk sigmoid(-b t)
    b: float = 1.0
    stages: int = 8  # stages of dt over curriculum_steps: dt / t = n(t) / q^(s + 1), s = 0 .. stages - 1
    curriculum: str = "fixed"  # the cm sampler's levels: a Karras grid of N points
    N: int = 18
    target: str = "stopgrad"
    weighting: str = "uniform"  # unused by ECT's loss, which weighs by 1 / (t - r)


def _check_base(cfg: ECTConfig) -> None:
    if get_model(cfg.base).name != "edm":
        raise ValueError(f"ect starts from an edm run: model.base must be edm, got {cfg.base!r}")


@register_model("ect")
class ECT(ConsistencyModel):
    """A consistency model tuned from an EDM run (ECT)."""

    Config = ECTConfig
    key_params = ()
    summary = "ECT: consistency tuning from a trained edm run (continuous-time dt schedule, no teacher ODE, no JVP)"

    @classmethod
    def check_config(cls, cfg: ECTConfig) -> None:
        if cfg.mode != "tune":
            raise ValueError(f"ect: model.mode is tune (ECT's own), got {cfg.mode!r}; use the cm model for distill or"
                             " train")
        super().check_config(dataclasses.replace(cfg, mode="train"))
        _check_base(cfg)
        if not (cfg.q > 1 and cfg.kk >= 0 and cfg.b > 0 and cfg.stages >= 1):
            raise ValueError("ect: need q > 1, kk >= 0, b > 0 and stages >= 1")

    @classmethod
    def parents(cls, cfg: ECTConfig) -> dict[str, tuple[str, dict]]:
        _check_base(cfg)  # before the parent's config is built with EDM's keys
        # the parent's network has these weights; dropout is not a weight (ECT tunes EDM's 0.13 at 0.2)
        net = {f"model.net.{k}": v for k, v in dataclasses.asdict(cfg.net).items() if k != "dropout"}
        return {"base": (cfg.base, {"model.sigma_data": cfg.sigma_data, **net})}

    def attach_parents(self, parents, *, run_dir, seed: int, log=print) -> None:
        """F starts as the EDM network: both take c_in x and the same noise condition (EDM: ln(sigma) / 4 into
        an embedding scaled by 1000; here 250 ln sigma into an unscaled one)."""
        base = parents["base"]
        self.net.load_state_dict(base.D.net.state_dict())
        log(f"ect: network initialised from the {base.name} run")

    def dt_ratio(self, t: torch.Tensor, step: int) -> torch.Tensor:
        """(t - r) / t = n(t) / q^(s + 1), s = min(floor(k / d), stages - 1)."""
        d = max(1, self.cfg.curriculum_steps // self.cfg.stages)
        n = 1 + self.cfg.kk * torch.sigmoid(-self.cfg.b * t)
        return (n / self.cfg.q ** (min(step // d, self.cfg.stages - 1) + 1)).clamp(max=1.0)

    def forward(self, x0: torch.Tensor, *, phase: str, step: int, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        t = (cfg.p_mean + cfg.p_std * torch.randn(x0.shape[0], device=x0.device, dtype=torch.float64)).exp()
        t = t.clamp(cfg.sigma_min * 1.001, cfg.sigma_max)
        r = (t * (1 - self.dt_ratio(t, step))).clamp(min=cfg.sigma_min)
        z = torch.randn_like(x0)
        with torch.no_grad():
            target = self.consistency(self.net, x0 + _bcast(r, x0).to(x0.dtype) * z, r)
        online = self.consistency(self.net, x0 + _bcast(t, x0).to(x0.dtype) * z, t)
        weight = (1.0 / (t - r)).to(x0.dtype)
        loss = (weight * self.distance(online, target)).mean()
        return {"loss": loss, "dt_ratio": self.dt_ratio(torch.ones(1, dtype=torch.float64), step).float().mean()}
