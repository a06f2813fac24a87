"""The shape of a suite file, checked before anything is resolved, trained or written.

Each top-level key has a type (and a range where one applies); unknown keys are errors that
list the valid ones. Sections whose keys belong to a dataclass (`[metrics]`, `[timing]`,
`[sampler.<name>]`, a variant's `set`) are checked by that dataclass when the grid is built
(bench/config/run.py `build`), which rejects unknown keys and non-finite numbers; `[timing]` also
gets its ranges here.
"""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError

MAX_SAMPLES = 1_000_000
MAX_SEED = 2**31 - 1
MAX_STEPS = 1_000_000
MAX_BOOTSTRAP = 10_000
MAX_SEEDS = 100
MAX_GUIDANCE = 64  # values on a guidance axis

VARIANT_KEYS = {"method": "a sampler name", "model": "a model name", "set": "a table of config overrides",
                "sampler": "a table of sampler options", "steps": "a list of step counts",
                "nfe": "a list of NFE budgets", "grid": "a list of time grids (methods/grids.py)"}
TIMING_RANGES = {"batch": (1, 1_000_000), "warmup": (0, 10_000), "repeats": (1, 100_000)}


def _int(value: Any, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BenchError(f"{key} must be an integer in {lo}..{hi}, got {value!r}")
    if not lo <= value <= hi:
        raise BenchError(f"{key} must be in {lo}..{hi}, got {value}")
    return value


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise BenchError(f"{key} must be a non-empty string, got {value!r}")
    return value


def _names(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise BenchError(f"{key} must be a non-empty list of names, e.g. {key} = [\"ddim\"], got {value!r}")
    return [_str(v, f"{key}[{i}]") for i, v in enumerate(value)]


def _counts(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise BenchError(f"{key} must be a non-empty list of positive integers, e.g. {key} = [1, 4], got {value!r}")
    return [_int(v, f"{key}[{i}]", 1, MAX_STEPS) for i, v in enumerate(value)]


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BenchError(f"{key} must be a table ([{key}] with key = value lines), got {type(value).__name__}")
    return value


def _counts_or_table(value: Any, key: str) -> None:
    """`steps` / `nfe`: a list for every sampler, or a table of lists keyed by sampler name."""
    if isinstance(value, dict):
        for name, v in value.items():
            _counts(v, f"{key}.{name}")
    else:
        _counts(value, key)


def _variants(value: Any) -> None:
    for name, var in _table(value, "variants").items():
        var = _table(var, f"variants.{name}")
        unknown = sorted(set(var) - set(VARIANT_KEYS))
        if unknown:
            raise BenchError(f"unknown key variants.{name}.{unknown[0]}; a variant takes: "
                             + ", ".join(f"{k} ({v})" for k, v in VARIANT_KEYS.items()))
        for k in ("method", "model"):
            if k in var:
                _str(var[k], f"variants.{name}.{k}")
        for k in ("set", "sampler"):
            if k in var:
                _table(var[k], f"variants.{name}.{k}")
        for k in ("steps", "nfe"):
            if k in var:
                _counts(var[k], f"variants.{name}.{k}")
        if "grid" in var:
            _grids(var["grid"], f"variants.{name}.grid")


def _timing(value: Any) -> None:
    for k, v in _table(value, "timing").items():
        if k in TIMING_RANGES:
            _int(v, f"timing.{k}", *TIMING_RANGES[k])
        elif k == "max_seconds" and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 86_400):
            raise BenchError(f"timing.max_seconds must be a number of seconds in 0..86400 (0: no cap), got {v!r}")


def _seeds(value: Any) -> None:
    if not isinstance(value, list) or not value or len(value) > MAX_SEEDS:
        raise BenchError(f"seeds must be a list of 1..{MAX_SEEDS} training seeds, e.g. seeds = [0, 1, 2], got {value!r}")
    for i, v in enumerate(value):
        _int(v, f"seeds[{i}]", 0, MAX_SEED)


def _guidance(value: Any) -> None:
    ok = isinstance(value, list) and 0 < len(value) <= MAX_GUIDANCE
    if not ok or not all(v == "uncond" or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
        raise BenchError(f"guidance must be a list of 1..{MAX_GUIDANCE} values w >= 0 or \"uncond\", e.g. guidance ="
                         f" [0, 0.5, 1, 2, 4], got {value!r}")


def _grids(value: Any, key: str = "grid") -> None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise BenchError(f"{key} must be a list of grid names, e.g. {key} = [\"karras\", \"trailing\"] or"
                         f" [\"karras(rho=5, final=none)\"], got {value!r}")


def _classes(value: Any) -> None:
    if value != "uniform" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise BenchError(f"classes must be \"uniform\" or one class index >= 0, got {value!r}")


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise BenchError(f"{key} must be true or false, got {value!r}")
    return value


def _notes(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BenchError(f"notes must be a list of strings, got {value!r}")


CHECKS = {
    "description": lambda v: _str(v, "description"),
    "dataset": lambda v: _str(v, "dataset"),
    "preset": lambda v: _str(v, "preset"),
    "methods": lambda v: _names(v, "methods"),
    "models": lambda v: _names(v, "models"),
    "steps": lambda v: _counts_or_table(v, "steps"),
    "nfe": lambda v: _counts_or_table(v, "nfe"),
    "num_samples": lambda v: _int(v, "num_samples", 1, MAX_SAMPLES),
    "seed": lambda v: _int(v, "seed", 0, MAX_SEED),
    "seeds": _seeds,
    "bootstrap": lambda v: _int(v, "bootstrap", 0, MAX_BOOTSTRAP),
    "guidance": _guidance,
    "grid": _grids,
    "classes": _classes,
    "precision": lambda v: _str(v, "precision"),  # fp32 | bf16, checked with the grid (bench/measure/runtime.py)
    "compile": lambda v: _bool(v, "compile"),
    "sample_batch": lambda v: _int(v, "sample_batch", 1, MAX_SAMPLES),
    "bpd_images": lambda v: _int(v, "bpd_images", 1, MAX_SAMPLES),
    "notes": _notes,
    "variants": _variants,
    "sampler": lambda v: [_table(t, f"sampler.{k}") for k, t in _table(v, "sampler").items()],
    "metrics": lambda v: _table(v, "metrics"),
    "timing": _timing,
}


def check_suite(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """`raw` unchanged if it is a well-formed suite, else a one-line BenchError naming the key."""
    if not raw:
        raise BenchError(f"{where} is empty: a suite needs at least `methods = [...]` (see bench/config/suites/toy.toml)")
    unknown = sorted(set(raw) - set(CHECKS))
    if unknown:
        raise BenchError(f"{where}: unknown key {unknown[0]!r}; a suite takes: {', '.join(CHECKS)}")
    for key, value in raw.items():
        try:
            CHECKS[key](value)
        except BenchError as e:
            raise BenchError(f"{where}: {e}") from None
    if "methods" not in raw and "variants" not in raw:
        raise BenchError(f"{where} names no samplers: add `methods = [...]` or a [variants.<name>] table")
    return raw
