"""Bits per dimension of held-out images under a model's likelihood (bound), e.g. VDM's VLB.

Scored on `data.eval_batch(n)` (the image datasets: the first n images of the test split)
in blocks of BLOCK images; block b draws its diffusion times and noise from torch seed
seed*1000003+b, so the number does not depend on anything but (checkpoint, n, seed).
Digits padded to a larger side (MNIST 28 -> 32) keep their constant border in the bound: the
row's notes say so, since such bits/dim are not comparable with the native 28 x 28 figures.
"""

from __future__ import annotations

import torch

from bench.metrics.registry import register_metric

BLOCK = 100  # images per bpd call: the discretised decoder holds (BLOCK, D, 256) logits


def bits_per_dim(model, data, *, name: str, num_images: int, seed: int,
                 device: torch.device) -> tuple[dict[str, float], list[str]]:
    """({'bpd': mean bits/dim}, notes) on image data; ({}, []) on other data, where bpd does not apply."""
    if len(data.shape) != 3:
        return {}, []
    x = data.eval_batch(num_images)
    values = []
    for b, i in enumerate(range(0, len(x), BLOCK)):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + b)
        with torch.no_grad():
            bpd = model.bpd(x[i:i + BLOCK].to(device), generator=gen)
        if bpd is None:
            return {}, [f"bpd: {name} defines no likelihood"]
        values.append(bpd.detach().double().cpu())
    v = torch.cat(values)
    if not bool(torch.isfinite(v).all()):
        return {}, [f"bpd: non-finite bound on {int((~torch.isfinite(v)).sum())} of {len(v)} test images"]
    sem = float(v.std() / len(v) ** 0.5) if len(v) > 1 else float("nan")
    notes = [f"bpd: first {len(v)} test images, one Monte Carlo draw of the bound per image (standard error {sem:.3f})"]
    native = getattr(data, "padded_from", 0)
    if native:
        h, w = data.shape[1:]
        notes.append(f"bpd: on {h}x{w} images padded from {native}x{native} with a constant border, which the bound"
                     f" counts: not comparable with bits/dim of native {native}x{native} digits")
    return {"bpd": float(v.mean())}, notes


register_metric("bpd", header="bits/dim (test)", kind="likelihood", position=1, group="likelihood", better="lower",
                fmt="{:.3f}", per_sampler=False, needs=("images", "likelihood"),
                features="data space: the test split under the model's likelihood bound")
