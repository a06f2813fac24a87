"""The time grid of a sampler, as its own axis: named grids with parameters -> a list of sigmas.

A grid is written `name` or `name(key=value, ...)`, e.g. `karras`, `karras(rho=5, final=none)`,
`logsnr(sigma_min=0.01)`. Its canonical text (`Grid.text`) names only parameters that differ from
their defaults, so `karras(rho=7)` and `karras` are one grid.

name          sigmas s_0 > ... > s_{M-1} (M points from sigma_max down to sigma_min)
karras        (s_max^(1/rho) + i / (M - 1) (s_min^(1/rho) - s_max^(1/rho)))^rho, rho = 7 (Karras et al. 2022,
              EDM eq. 5; diff-sampler calls the same grid `polynomial`, and `edm` and `polynomial` are
              accepted as its aliases)
logsnr        uniform in log sigma (= uniform in logSNR = -2 log sigma; the limit rho -> inf)
time-uniform  uniform in the model's own time t (a DDPM's timestep index, VDM's or a flow's t in [0, 1]),
              between t(sigma_max) and t(sigma_min)
trailing, leading, linspace
              diffusers' timestep spacings on the model's discrete T: the integer timesteps diffusers
              lists for N steps, their sigmas, then 0 (the discrete solvers run these through diffusers
              exactly as before; see methods/samplers/sigma_loop.py)

Every sigma grid has `sigma_min` and `sigma_max` (defaults: EDM's 0.002 and 80, clamped to the model's
valid range, so a DDPM with linear betas gets [0.0100, 80]) and a final step, `final`:
- `zero` (default): the grid ends s_{N-1} = sigma_min, 0. The solver walks to sigma_min and the last step
  is one Euler step to 0, which is exactly D(x; sigma_min): N steps, N network calls for a one-call solver.
- `none`: the grid ends at sigma_min and the sample is the state there, with noise of std sigma_min left
  in it (diff-sampler's convention: N steps on N + 1 points from sigma_max to sigma_min). Rows record the
  final sigma reached.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import torch
from diffusers import EulerDiscreteScheduler

SIGMA_GRIDS = ("karras", "logsnr", "time-uniform")
SPACINGS = ("trailing", "leading", "linspace")
ALIASES = {"edm": "karras", "polynomial": "karras"}
FINALS = ("zero", "none")
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0  # EDM's defaults
PARAMS = {"karras": {"rho": 7.0}, "logsnr": {}, "time-uniform": {}}
COMMON = {"sigma_min": None, "sigma_max": None, "final": "zero"}


@dataclasses.dataclass(frozen=True)
class Grid:
    """A named grid and its parameters (only those that differ from the defaults)."""

    name: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def is_spacing(self) -> bool:
        """A diffusers timestep spacing on the model's discrete T (not a sigma grid)."""
        return self.name in SPACINGS

    def get(self, key: str) -> Any:
        defaults = {**COMMON, **PARAMS.get(self.name, {})}
        return dict(self.params).get(key, defaults.get(key))

    @property
    def final(self) -> str:
        return "zero" if self.is_spacing else self.get("final")

    @property
    def text(self) -> str:
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in self.params)
        return f"{self.name}({inner})"

    @classmethod
    def parse(cls, text: str) -> "Grid":
        """`name` or `name(k=v, ...)`; a one-line ValueError naming what is wrong."""
        m = re.fullmatch(r"\s*([A-Za-z][\w-]*)\s*(?:\((.*)\))?\s*", str(text))
        if not m:
            raise ValueError(f"grid {text!r} is not `name` or `name(key=value, ...)`; e.g. karras(rho=7)")
        name = ALIASES.get(m.group(1).lower(), m.group(1).lower())
        if name not in SIGMA_GRIDS + SPACINGS:
            raise ValueError(f"unknown grid {m.group(1)!r}; choose from {', '.join(SIGMA_GRIDS + SPACINGS)}"
                             f" (aliases: {', '.join(ALIASES)})")
        params: dict[str, Any] = {}
        for item in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not value.strip():
                raise ValueError(f"grid {text!r}: parameter {item!r} is not key=value")
            if name in SPACINGS:
                raise ValueError(f"grid {name} is diffusers' spacing of the discrete timesteps: it takes no"
                                 f" parameters (got {key})")
            allowed = {**COMMON, **PARAMS[name]}
            if key not in allowed:
                raise ValueError(f"grid {name} has no parameter {key!r}; it takes {', '.join(allowed)}")
            if key in params:
                raise ValueError(f"grid {text!r} sets {key} twice")
            params[key] = _value(name, key, value.strip())
        defaults = {**COMMON, **PARAMS.get(name, {})}
        kept = tuple(sorted((k, v) for k, v in params.items() if v != defaults[k]))
        grid = cls(name, kept)
        grid.check()
        return grid

    def check(self) -> None:
        lo, hi = self.get("sigma_min"), self.get("sigma_max")
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"grid {self.text}: sigma_min must be below sigma_max")

    def range(self, lo: float, hi: float) -> tuple[float, float]:
        """(sigma_min, sigma_max) of this grid on a model valid on [lo, hi]: the grid's own values, or EDM's
        defaults clamped into the model's range; an explicit value outside the range is an error."""
        s_min, s_max = self.get("sigma_min"), self.get("sigma_max")
        for key, v in (("sigma_min", s_min), ("sigma_max", s_max)):
            if v is not None and not lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9):
                raise ValueError(f"grid {self.text}: {key}={_fmt(v)} is outside the model's valid sigmas"
                                 f" [{lo:.4g}, {hi:.4g}]")
        s_min = max(SIGMA_MIN, lo) if s_min is None else s_min
        s_max = min(SIGMA_MAX, hi) if s_max is None else s_max
        if not s_min < s_max:
            raise ValueError(f"grid {self.text}: sigma_min {s_min:.4g} is not below sigma_max {s_max:.4g}")
        return s_min, s_max

    def sigmas(self, steps: int, denoiser) -> torch.Tensor:
        """The grid for `steps` steps on a model's sigma-space view (methods/sigma.py), float64:
        final zero: s_0 .. s_{steps-1}, 0 (steps points above 0); final none: s_0 .. s_steps."""
        if self.is_spacing:
            raise ValueError(f"grid {self.name} is a timestep spacing: use spacing_sigmas")
        s_min, s_max = self.range(denoiser.sigma_min, denoiser.sigma_max)
        points = steps if self.final == "zero" else steps + 1
        ramp = torch.linspace(0, 1, points, dtype=torch.float64) if points > 1 else torch.zeros(1, dtype=torch.float64)
        if self.name == "karras":
            rho = float(self.get("rho"))
            out = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        elif self.name == "logsnr":
            out = torch.exp(math.log(s_max) + ramp * (math.log(s_min) - math.log(s_max)))
        else:  # time-uniform
            if denoiser.t_of_sigma is None or denoiser.sigma_of_t is None:
                raise ValueError(f"grid time-uniform needs a model with its own time; {denoiser.describe.get('view')}")
            t_hi, t_lo = (denoiser.t_of_sigma(torch.tensor([v], dtype=torch.float64)).double() for v in (s_max, s_min))
            out = denoiser.sigma_of_t(t_hi + ramp * (t_lo - t_hi)).double().reshape(-1)
        out[0] = s_max
        if points > 1:
            out[-1] = s_min
        return torch.cat([out, torch.zeros(1, dtype=torch.float64)]) if self.final == "zero" else out


def spacing_sigmas(schedule, spacing: str, steps: int) -> torch.Tensor:
    """The sigmas of diffusers' `spacing` for `steps` steps on a discrete schedule, then 0: exactly what
    EulerDiscreteScheduler lists (methods/prediction.py DiscreteSchedule), float64."""

    sch = EulerDiscreteScheduler(**schedule.diffusers, timestep_spacing=spacing, steps_offset=0,
                                 final_sigmas_type="zero", interpolation_type="linear")
    sch.set_timesteps(steps)
    return sch.sigmas.double()


def parse_grids(values) -> list[Grid]:
    """A grid axis (suite `grid`, --grid): distinct grids in the order given."""
    out: list[Grid] = []
    for v in values:
        g = Grid.parse(v)
        if g in out:
            raise ValueError(f"grid {g.text} is listed twice; give each grid once")
        out.append(g)
    return out


def split_top_level(text: str) -> list[str]:
    """'karras(rho=5,final=none),trailing' -> ['karras(rho=5,final=none)', 'trailing'] (commas inside
    parentheses stay); an empty item is an error."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    if any(not p.strip() for p in parts):
        raise ValueError(f"--grid {text!r} has an empty item; e.g. --grid karras,trailing")
    return [p.strip() for p in parts]


def _value(name: str, key: str, text: str) -> Any:
    if key == "final":
        if text not in FINALS:
            raise ValueError(f"grid {name}: final must be {' or '.join(FINALS)}, got {text!r}")
        return text
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"grid {name}: {key} must be a number, got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"grid {name}: {key} must be a positive number, got {text}")
    return v


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)
