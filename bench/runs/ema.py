"""What follows the weights from step to step: the LR factor, the EMA copies and the target networks.

They live apart from the loop because a checkpoint writer (diffusers import) needs EMA without training.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import methods
from bench.config.run import TrainConfig


def lr_factor(cfg: TrainConfig, base_lr: float) -> Callable[[int], float]:
    """Linear warm-up, then constant, or cosine decay from base_lr to cfg.lr_min (a factor of base_lr)."""
    floor = min(cfg.lr_min / base_lr, 1.0) if base_lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class EMA:
    """Exponential moving averages of named submodules (torch's AveragedModel)."""

    def __init__(self, model: methods.Model, decay: float):
        self.models = {name: AveragedModel(getattr(model, name), multi_avg_fn=get_ema_multi_avg_fn(decay),
                                           use_buffers=True) for name in model.ema_modules}

    def update(self, model: methods.Model) -> None:
        for name, avg in self.models.items():
            avg.update_parameters(getattr(model, name))

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, avg in self.models.items() for k, v in avg.module.state_dict().items()}

    def counts(self) -> dict[str, torch.Tensor]:
        return {name: avg.n_averaged.cpu() for name, avg in self.models.items()}

    def load(self, weights: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> None:
        for name, avg in self.models.items():
            avg.module.load_state_dict({k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")})
            avg.n_averaged.copy_(counts[name])

    def apply_to(self, model: methods.Model) -> None:
        for name, avg in self.models.items():
            getattr(model, name).load_state_dict(avg.module.state_dict())


@torch.no_grad()
def update_targets(model: methods.Model, step: int) -> float | None:
    """theta- <- mu theta- + (1 - mu) theta for each of the method's target modules, with
    mu = method.target_decay(step); buffers are copied. Returns mu (None without targets)."""
    if not model.target_modules:
        return None
    mu = float(model.target_decay(step))
    for target_name, online_name in model.target_modules.items():
        target, online = getattr(model, target_name), getattr(model, online_name)
        t_params, o_params = list(target.parameters()), list(online.parameters())
        torch._foreach_lerp_(t_params, o_params, 1.0 - mu)
        for tb, ob in zip(target.buffers(), online.buffers()):
            tb.copy_(ob)
    return mu


def after_optimizer_step(model: methods.Model, step: int) -> dict[str, float]:
    """The per-iteration hooks after the optimizer steps: target networks, then `after_step`."""
    mu = update_targets(model, step)
    logs = {} if mu is None else {"target/decay": mu}
    return {**logs, **model.after_step(step)}
