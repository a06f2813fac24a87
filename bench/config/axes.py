"""The axes of a comparison grid, parsed and checked: grids, guidance, seeds, classes, sampler options."""

from __future__ import annotations
import dataclasses
from typing import Any
from bench.config.values import build
from bench.config.suite_schema import MAX_SEED
from bench.errors import BenchError
from methods.grids import Grid, parse_grids
from methods.guidance import UNCOND, Guidance


def frozen_items(items: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Sorted (key, value) pairs with lists as tuples, so that a cell stays hashable whatever TOML gave
    (`set = { "model.net.fourier_freqs" = [1, 2] }`); the config's coercion takes tuples for lists."""
    def freeze(v):
        return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v
    return tuple(sorted((k, freeze(v)) for k, v in items.items()))


def sampler_options(cls: type, opts: dict, name: str) -> dict:
    """Sampler options from a suite or --set, checked against the sampler's Options dataclass."""
    if not opts:
        return {}
    if not dataclasses.fields(cls.Options):
        raise BenchError(f"{name} takes no sampler options, got {', '.join(opts)}")
    return dataclasses.asdict(build(cls.Options, opts, f"sampler.{name}."))


def per_sampler(value: Any, name: str) -> list[int] | None:
    """A suite's `nfe` / `steps`: a list for every sampler, or a table keyed by sampler name."""
    if isinstance(value, dict):
        value = value.get(name)
    return list(value) if value else None


def grid_axis(values) -> list[str]:
    """A grid axis (suite `grid`, --grid) as canonical grid texts, each once."""
    if isinstance(values, str):
        values = [values]
    try:
        return [g.text for g in parse_grids(values)]
    except ValueError as e:
        raise BenchError(str(e)) from None


def grids_for(name: str, sampler: type, model_name: str, axis: list[str], var: dict, notes: list[str]
               ) -> list[Grid | None]:
    """The grids one sampler runs on: the variant's `grid`, else the axis; those it cannot run on are
    skipped with a note (when none is left, its own default grid, with a note); samplers with their own grid
    ignore the axis."""
    wanted = grid_axis(var["grid"]) if "grid" in var else axis
    if not wanted:
        return [None]
    if not sampler.grid_kinds:
        notes.append(f"{name} samples on its own grid (trained steps or time grid): the grid axis does not apply")
        return [None]
    keep, errors = [], []
    for text in wanted:
        try:
            keep.append(sampler.grid_of(Grid.parse(text)))
        except ValueError as e:
            errors.append(str(e))
    if not keep:  # none of the axis fits: the sampler keeps its own default grid, and says so
        notes.append(f"{name} on {model_name}: {errors[0]}; none of the grid axis fits it, so its rows are on its own"
                     f" default grid ({sampler.default_grid})")
        return [None]
    notes += [f"{name} on {model_name}: {e}, so that grid has no {name} rows" for e in errors]
    return keep


def guidance_axis(values: list) -> list[str]:
    """Guidance values as canonical text ('0', '0.5', 'uncond'), each once, in the order given."""
    out = []
    for v in values:
        try:
            text = Guidance.parse(v).text
        except ValueError as e:
            raise BenchError(f"{e} (--guidance takes e.g. 0,0.5,1,{UNCOND})") from None
        if text in out:
            raise BenchError(f"guidance repeats {text}; give each value once")
        out.append(text)
    return out


def check_classes(classes: str, k: int, model: str) -> None:
    """`classes`: 'uniform', or one class in 0..K-1 of the conditional model (compare and sample)."""
    if classes != "uniform" and (not classes.isdigit() or not 0 <= int(classes) < k):
        raise BenchError(f"classes must be 'uniform' or one class in 0..{k - 1} of the conditional {model},"
                         f" got {classes!r}")


def seed_axis(values: list[int]) -> list[int]:
    """A seeds axis: distinct seeds in range, in the order given."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED:
            raise BenchError(f"seeds must be integers in 0..{MAX_SEED}, got {v!r}")
    if len(set(values)) != len(values):
        raise BenchError(f"seeds repeat a value ({', '.join(map(str, values))}); give each training seed once")
    return list(values)


PRECISIONS = ("fp32", "bf16")


def check_runtime(precision: str, compile_: bool) -> None:
    """How networks run while sampling (bench/measure/runtime.py): a known precision, compile a bool."""
    if precision not in PRECISIONS:
        raise BenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if not isinstance(compile_, bool):
        raise BenchError(f"compile must be true or false, got {compile_!r}")
