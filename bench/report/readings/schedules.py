"""The reading of learned noise schedules (VDM, Kingma et al. 2021): gamma(t) = -log SNR(t) as
trained, saved by the runner in diagnostics/NAME.npz, against the fixed linear schedule it started from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.plots import plt
from bench.report.readings.registry import Figure, Results, as_bullets, register


def _curves(results: Results) -> list[tuple[str, np.lib.npyio.NpzFile]]:
    """(name, arrays) of each saved schedule that holds t, gamma and the initial linear gamma."""
    folder = results.folder / "diagnostics"
    found = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    curves = [(p.stem, np.load(p)) for p in found]
    return [(name, d) for name, d in curves if {"t", "gamma", "gamma_fixed_linear"} <= set(d.files)]


def _figure(results: Results, spec: dict, path: Path) -> bool:
    curves = _curves(results)
    if not curves:
        return False
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for name, d in curves:
        ax.plot(d["t"], d["gamma"], label=f"{name}: learned")
        ax.plot(d["t"], d["gamma_fixed_linear"], ls="--", lw=1, label=f"{name}: fixed linear (initial)")
    ax.set_xlabel("t")
    ax.set_ylabel("gamma(t) = -log SNR(t)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


@register("schedules", order=60, figures=(Figure("noise_schedule.png", _figure, 60),))
def schedules(results: Results, spec: dict) -> str | None:
    """One line per schedule: its end points, where it started, and its largest gap to the linear one."""
    return as_bullets([
        f"**{name}** noise schedule: gamma(0) = {d['gamma'][0]:.2f}, gamma(1) = {d['gamma'][-1]:.2f}"
        f" (started at {d['gamma_fixed_linear'][0]:.2f}, {d['gamma_fixed_linear'][-1]:.2f});"
        f" largest gap to the linear schedule {np.abs(d['gamma'] - d['gamma_fixed_linear']).max():.2f}."
        for name, d in _curves(results)])
