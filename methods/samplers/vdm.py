"""VDM's ancestral sampler (Kingma et al. 2021) over any continuous-time eps model:

    z_s = (alpha_s / alpha_t)(z_t - sigma_t c eps_hat) + sqrt((1 - alpha_s^2) c) eps,  c = -expm1(gamma_s - gamma_t)

on t_i = i / steps from z_1 = noise down to z_0, then the model's decoder (VDM: its mode)."""

from __future__ import annotations

import functools

import torch
from diffusers.utils.torch_utils import randn_tensor

from methods.base import LoopSampler
from methods.prediction import Prediction
from methods.registry import register_sampler
from methods.samplers.base import NoOptions, SamplerDef


def vdm_sample(pred: Prediction, noise: torch.Tensor, *, steps: int, generator: torch.Generator | None) -> torch.Tensor:
    """One call of pred.fn per step; every draw uses `generator`."""
    t = torch.linspace(1.0, 0.0, steps + 1, device=noise.device)
    gamma = pred.schedule.gamma(t)
    z_t = noise
    for i in range(steps):
        g_t, g_s = gamma[i], gamma[i + 1]
        eps_hat = pred.fn(z_t, t[i].expand(z_t.shape[0]))
        c = -torch.expm1(g_s - g_t)
        alpha2_t, alpha2_s = torch.sigmoid(-g_t), torch.sigmoid(-g_s)
        mean = (alpha2_s / alpha2_t).sqrt() * (z_t - torch.sigmoid(g_t).sqrt() * c * eps_hat)
        noise_s = randn_tensor(z_t.shape, generator=generator, device=z_t.device, dtype=z_t.dtype)
        z_t = mean + ((1.0 - alpha2_s) * c).sqrt() * noise_s
    return pred.decode(z_t)


@register_sampler("vdm")
class VDMAncestral(SamplerDef):
    grid_kinds = ()  # its own grid (uniform t, trained steps or the Karras levels it was trained on)
    Options = NoOptions
    times = ("continuous",)
    default_model = "vdm"
    stochastic = True
    summary = "VDM ancestral sampling p(z_s | z_t) with any number of steps (continuous-time eps models)"

    @classmethod
    def default_steps(cls, model_cls, model_cfg) -> int:
        """As the reference: the T of a discrete-time loss, else 1000 steps."""
        return getattr(model_cfg, "loss_T", 0) or 1000

    @classmethod
    def build(cls, model, steps: int, opts=None, grid=None) -> LoopSampler:
        cls.check(model, steps, opts)
        pred = model.prediction()
        settings = {"sampler": "ancestral", "time_grid": "uniform in t", **pred.schedule.describe}
        loop = functools.partial(vdm_sample, pred, steps=steps)
        return LoopSampler(loop, steps=steps, nfe=steps, label=f"vdm-{steps}", settings=settings)
