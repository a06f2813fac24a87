"""Training presets (bench/config/suites/presets/) and --config files: the layers under the command line."""

from __future__ import annotations
import json
from pathlib import Path
from typing import Any
import methods
from bench.config.values import deep_update, load_toml
from bench.errors import BenchError


PRESETS_DIR = Path(__file__).parent / "suites" / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.toml"))


def load_preset(name: str, model: str) -> dict[str, Any]:
    """A preset's common sections merged with its section for `model` (nested dict).
    `name` is a preset in bench/config/suites/presets/ or a path to your own TOML file."""
    path = Path(name) if name.endswith(".toml") else PRESETS_DIR / f"{name}.toml"
    if not path.exists():
        raise BenchError(f"unknown preset {name!r}; choose from: {', '.join(list_presets())}, or a path to a .toml file")
    raw = load_toml(path, "preset")
    unknown = sorted(set(raw) - {"description", "data", "train"} - set(_model_names()))
    if unknown:
        raise BenchError(f"preset {str(path)!r} has unknown section {unknown[0]!r}; use data, train or a model name")
    common = {k: raw[k] for k in ("data", "train") if k in raw}
    specific = raw.get(model, {})
    return deep_update(common, specific)


def _model_names() -> list[str]:
    return methods.list_models()


def load_config_file(path: str | Path) -> dict[str, Any]:
    """--config FILE: TOML with [model]/[data]/[train] tables, or a run's config.json."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise BenchError(f"config file {str(path)!r} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BenchError(f"config file {str(path)!r} is not valid JSON: {e}") from None
    else:
        raw = load_toml(path, "config file")
    extra = sorted(set(raw) - {"model", "data", "train", "method", "preset"})
    if extra:
        raise BenchError(f"config file {str(path)!r} has unknown section {extra[0]!r}; use model, data, train")
    return {k: raw[k] for k in ("model", "data", "train") if k in raw}
