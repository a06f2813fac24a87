"""Measured orders of convergence: every deterministic solver on an exact-score model against a reference
solution of the same probability-flow ODE from the same noise (orders.csv beside results.csv).

reference   scipy's DOP853 (rtol = atol = 1e-10) on dx/du = x - D(x; e^u), u = log sigma, from the row's
            first sigma to its last one; a row that ends at sigma = 0 (final zero, or a spacing's step to
            the clean sample) is integrated down to sigma = 1e-5 and denoised there, which is the exact
            flow map to 0 within ~1e-10 for these densities. Flow samplers on the flow oracle (no sigma
            grid) are integrated in t from 1 to 0 on dx/dt = v(x, t).
error       the mean over samples of ||x_solver - x_reference||_2, on the first samples of the row's first
            noise block (the very noise the row's samples start from): 200 toy points, 102 MNIST images
same_image  the data oracle only: the share of samples whose nearest training image is the exact solution's.
            There the exact flow ends on a training image, so a solver's error is a jump to another image
            (about the distance between two images) for some samples and ~0 for the rest: the error is not
            smooth in NFE and no order is fitted (`order` empty); same_image is the measure.
order       the least-squares slope of -log error against log NFE over the three largest NFEs of the
            (sampler, grid, model): the end where the asymptotic regime holds, if anywhere; `fit_nfe`
            names the range. `expected_order` is what theory promises (SamplerDef.expected_order).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import methods
from bench.files import atomic_write_text
from bench.runs.folders import build_sampler
from methods.grids import Grid
from methods.sigma import denoiser_of

ORDER_SAMPLES = 200  # at most; fewer at image dimension, where one reference solve of 200 x 784 unknowns costs minutes
ORDER_VALUES = 80_000  # samples x dimension solved for the reference at most (MNIST: 102 images)
RTOL = 1e-10
SIGMA_END = 1e-5
COLUMNS = ["sampler", "grid", "model", "label", "steps", "nfe", "error", "same_image", "order", "fit_nfe",
           "expected_order", "reference"]


def exact(model_cls) -> bool:
    """An exact-score model: built from the data, nothing trained (the oracles, the data oracle)."""
    return not model_cls.trainable and model_cls.samplable


def _ode_reference(D, x0: torch.Tensor, s_start: float, s_end: float) -> torch.Tensor:
    from scipy.integrate import solve_ivp

    shape = x0.shape

    def f(u, y):
        x = torch.from_numpy(y).reshape(shape)
        return (x - D(x, math.exp(u)).double()).numpy().ravel()

    to = max(s_end, SIGMA_END)
    sol = solve_ivp(f, (math.log(s_start), math.log(to)), x0.double().numpy().ravel(), method="DOP853",
                    rtol=RTOL, atol=RTOL)
    x = torch.from_numpy(sol.y[:, -1]).reshape(shape)
    return D(x, to).double() if s_end == 0 else x


def _flow_reference(v, x0: torch.Tensor) -> torch.Tensor:
    from scipy.integrate import solve_ivp

    shape = x0.shape

    def f(t, y):
        x = torch.from_numpy(y).reshape(shape)
        return v(x, torch.tensor(t, dtype=torch.float64)).double().numpy().ravel()

    sol = solve_ivp(f, (1.0, 0.0), x0.double().numpy().ravel(), method="DOP853", rtol=RTOL, atol=RTOL)
    return torch.from_numpy(sol.y[:, -1]).reshape(shape)


def reference_for(model, settings: dict, noise: torch.Tensor, cache: dict) -> tuple[torch.Tensor, str] | None:
    """The exact solution the row's solver approximates, in the space its samples are in; None when the row
    has no ODE to compare with."""
    if "sigmas" not in settings:
        if model.kind != "velocity":
            return None
        key = ("flow",)
        if key not in cache:
            cache[key] = _flow_reference(model.prediction().fn, noise)
        return cache[key], "DOP853 in t on the exact velocity"
    sigmas = [s for s in settings["sigmas"] if s > 0]
    s0, s_end = float(sigmas[0]), float(settings["final_sigma"])
    sigma_start = "x_start" in settings  # the sigma loop starts at noise * sigma_0, diffusers' at noise * sqrt(1 + s0^2)
    key = (round(s0, 9), round(s_end, 9), sigma_start)
    if key not in cache:
        D = denoiser_of(model)
        start = noise.double() * (s0 if sigma_start else math.sqrt(1 + s0**2))
        x = _ode_reference(D, start, s0, s_end)
        cache[key] = x if sigma_start else x / math.sqrt(1 + s_end**2)  # diffusers returns the VP state
    return cache[key], f"DOP853 in log sigma, rtol {RTOL:g}, from sigma {s0:.4g} to {s_end:.4g}"


def fit_order(nfe: list[float], err: list[float], points: int = 3) -> tuple[float, str]:
    """Slope of -log error on log NFE over the `points` largest NFEs (NaN when fewer than 2 usable)."""
    pairs = sorted((n, e) for n, e in zip(nfe, err) if n > 0 and e > 0 and math.isfinite(e))[-points:]
    if len(pairs) < 2 or len({n for n, _ in pairs}) < 2:
        return float("nan"), ""
    x, y = np.log([n for n, _ in pairs]), np.log([e for _, e in pairs])
    return float(-np.polyfit(x, y, 1)[0]), f"{int(pairs[0][0])}-{int(pairs[-1][0])}"


def measure_orders(cells, load, *, noise_for) -> pd.DataFrame:
    """orders.csv rows for the deterministic cells on exact-score models. `load(cell)` returns the cell's
    model; `noise_for(cell, model)` its first noise block."""

    rows, caches = [], {}
    for cell in cells:
        sampler_cls = methods.get_sampler(cell.sampler)
        model = load(cell)
        if model is None or not exact(type(model)) or sampler_cls.stochastic or sampler_cls.adaptive:
            continue
        if model.num_classes(model.cfg):
            continue  # guided scores: no single ODE to compare with
        sampler = build_sampler(cell.sampler, model, cell.steps, cell.options(), grid=cell.grid_spec())
        noise = noise_for(cell, model)
        noise = noise[:max(8, min(ORDER_SAMPLES, ORDER_VALUES // noise[0].numel()))]
        cache = caches.setdefault(cell.model_name, {})
        ref = reference_for(model, sampler.settings, noise, cache)
        if ref is None:
            continue
        x = sampler(noise, generator=torch.Generator().manual_seed(0)).double()
        grid = sampler.settings.get("grid", "")
        nearest = getattr(model, "nearest_image", None)
        same = float((nearest(x) == nearest(ref[0])).double().mean()) if nearest else float("nan")
        rows.append({"sampler": cell.variant or cell.sampler, "grid": grid, "model": cell.model_name,
                     "label": cell.sampler, "steps": cell.steps, "nfe": sampler.nfe,
                     "error": float((x - ref[0]).flatten(1).norm(dim=1).mean()), "same_image": same,
                     "expected_order": sampler_cls.expected_order(cell.options(), cell.grid_spec() or _grid(grid)),
                     "reference": ref[1]})
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("order", "fit_nfe")])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    fits = {key: (fit_order(list(g["nfe"]), list(g["error"])) if g["same_image"].isna().all() else (float("nan"), ""))
            for key, g in df.groupby(["sampler", "grid", "model"])}
    df["order"] = [fits[(r.sampler, r.grid, r.model)][0] for r in df.itertuples()]
    df["fit_nfe"] = [fits[(r.sampler, r.grid, r.model)][1] for r in df.itertuples()]
    return df[COLUMNS].sort_values(["model", "grid", "sampler", "nfe"]).reset_index(drop=True)


def _grid(text: str):
    try:
        return Grid.parse(text.split(" ")[0]) if text else None
    except ValueError:
        return None


def write_orders(df: pd.DataFrame, results_dir: Path) -> None:
    atomic_write_text(Path(results_dir) / "orders.csv", df.to_csv(index=False))
