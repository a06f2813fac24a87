"""preview.png, written when training ends: a look at what the run learned, from its EMA weights, drawn with
the report's own scatter and image grid (bench/plots.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

import methods
from bench.plots import plt, scatter, show_grid
from bench.runs.folders import call_sampler
from methods.guidance import condition

def preview(model, ema, data, cfg, run_dir, device, log) -> None:
    """preview.png: samples from the EMA weights. `train.preview_steps` picks the step count; the
    model's native sampler is used when it takes that many steps, else the first registered sampler
    of this model that does (e.g. ddim-50 for a ddpm run), so previews of slow samplers stay cheap. A
    class-conditional model previews conditional samples (w = 0) of classes 0, 1, 2, ... in turn."""

    cls = type(model)
    if not cls.samplable:
        return preview_reconstructions(model, ema, data, cfg, run_dir, device)
    names = methods.samplers_for(cls.name)
    native = methods.get_sampler(names[0])
    steps = cfg.train.preview_steps or native.default_steps(cls, cfg.model)
    usable = [n for n in names
              if methods.get_sampler(n).valid_steps(cls, cfg.model, methods.get_sampler(n).Options()).error(steps) is None]
    if not usable:
        log(f"preview skipped: no sampler of {cls.name} takes {steps} steps")
        return
    sampling = cls(cfg.model, model.data_shape).to(device)
    sampling.load_state_dict(model.state_dict())
    ema.apply_to(sampling)
    sampler = condition(methods.get_sampler(usable[0]).build(sampling.eval(), steps, None), sampling, None)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    noise = torch.randn(cfg.train.preview_samples, *data.shape, generator=gen).to(device)
    k = cls.num_classes(cfg.model)
    labels = torch.arange(len(noise)) % k if k else None
    x = data.to_data(call_sampler(sampler, noise, gen, labels).cpu())
    save_preview(x, run_dir / "preview.png", title=f"{run_dir.name}: {sampler.label}, {cfg.train.steps} steps")


def preview_reconstructions(model, ema, data, cfg, run_dir, device) -> None:
    """A stage's preview.png (the autoencoder): test images above their reconstructions (EMA weights)."""

    scoring = copy.deepcopy(model).to(device).eval()
    ema.apply_to(scoring)
    x = data.eval_batch(max(1, cfg.train.preview_samples // 2)).to(device)
    with torch.no_grad():
        x_hat = scoring.reconstruct(x, torch.Generator().manual_seed(cfg.train.seed))
    images = data.to_data(torch.cat([x, x_hat]).cpu())
    save_preview(images, run_dir / "preview.png", title=f"{run_dir.name}: test images, then reconstructions")


def save_preview(x: torch.Tensor, path: Path, *, title: str) -> None:
    """A scatter (2-D data) or an image grid (uint8 images) of samples."""
    arr = x.detach().cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5))
    if arr.ndim == 2:
        scatter(ax, arr, title)
    else:
        show_grid(ax, arr[:64], title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
