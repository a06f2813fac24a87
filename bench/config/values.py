"""Typed values from TOML, JSON and --set: coercion to a dataclass field's type, building frozen configs with one-
line errors, and layering dicts."""

from __future__ import annotations

import sys
import dataclasses
import math
import typing
from pathlib import Path
from typing import Any
from bench.errors import BenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def valid_keys(cls: type, prefix: str = "") -> list[str]:
    """All dotted keys of a (nested) config dataclass."""
    keys = []
    for name, tp in _field_types(cls).items():
        if dataclasses.is_dataclass(tp):
            keys += valid_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a TOML/JSON value or a --set string to the field's type, or raise BenchError."""
    origin = typing.get_origin(tp)
    try:
        if origin is tuple:
            (item_tp, *_rest) = typing.get_args(tp)
            if isinstance(value, str):
                value = [v for v in value.strip("()[] ").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return tuple(coerce(v, item_tp, key) for v in value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in {"true", "1", "yes", "false", "0", "no"}:
                return value.lower() in {"true", "1", "yes"}
            raise ValueError
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value) if not isinstance(value, str) else int(value.strip())
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise BenchError(f"{key}={value!r} is not a finite number; give e.g. {key}={_example(tp)}")
            return number
        if tp is str:
            if not isinstance(value, str):
                raise ValueError
            return value
    except (TypeError, ValueError):
        pass
    else:
        raise BenchError(f"config key {key!r} has unsupported type {tp}")
    name = getattr(tp, "__name__", str(tp))
    raise BenchError(f"{key}={value!r} is not a valid {name}; give e.g. {key}={_example(tp)}")


def _example(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return "64,128,128"
    return {int: "100", float: "0.5", bool: "true", str: "text"}.get(tp, "...")


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate a (nested) frozen config dataclass from a nested dict, strictly."""
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise BenchError(f"unknown config key {prefix + unknown[0]!r}; valid keys: {', '.join(valid_keys(cls, prefix))}")
    kwargs = {}
    for name, tp in types.items():
        if name not in values:
            continue
        if dataclasses.is_dataclass(tp):
            sub = values[name]
            if dataclasses.is_dataclass(sub):
                sub = dataclasses.asdict(sub)
            if not isinstance(sub, dict):
                raise BenchError(f"{prefix}{name} is a section; set its keys, e.g. {valid_keys(tp, prefix + name + '.')[0]}=...")
            kwargs[name] = build(tp, sub, f"{prefix}{name}.")
        else:
            kwargs[name] = coerce(values[name], tp, prefix + name)
    return cls(**kwargs)


def deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in new.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


def parse_sets(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """['train.steps=100', ...] -> {'train.steps': '100'}; malformed items are errors."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"--set {item!r} is malformed; write --set key=value, e.g. --set train.steps=1000")
        out[key.strip()] = value.strip()
    return out


def qualify(flat: dict[str, Any], sections: dict[str, type]) -> dict[str, Any]:
    """Give bare keys their section when exactly one section has them; reject unknown keys."""
    full = [f"{s}.{k}" for s, cls in sections.items() for k in valid_keys(cls)]
    out = {}
    for key, v in flat.items():
        if key in full:
            out[key] = v
            continue
        matches = [f for f in full if f.endswith("." + key)]
        if len(matches) == 1:
            out[matches[0]] = v
        elif matches:
            raise BenchError(f"config key {key!r} is ambiguous; write one of: {', '.join(matches)}")
        else:
            raise BenchError(f"unknown config key {key!r}; valid keys: {', '.join(full)}")
    return out


def load_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise BenchError(f"{what} {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{what} {str(path)!r} is not valid TOML: {e}") from None
