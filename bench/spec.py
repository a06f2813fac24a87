"""What a comparison measures: a suite file resolved with command-line overrides into a CompareSpec.

A suite (bench/suites/<name>.toml) names a dataset, a training preset, methods, the
step counts per method, optional sampler options and named variants (config
overrides such as DDGAN ablations), the number of samples, the timing protocol, the
image-metric options ([metrics], see bench/metrics/options.py) and `notes` for the
report (e.g. why a row is left out).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import methods
from bench.config import DataConfig, RunConfig, TrainConfig, build, load_toml, qualify, resolve_run_config
from bench.data import get_dataset_info
from bench.errors import BenchError
from bench.metrics.options import MetricOptions, validate_options
from bench.timing import TimingSpec

SUITES_DIR = Path(__file__).parent / "suites"
MAX_SAMPLES = 1_000_000


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row of the results: a sampler of a method at a step count, from one checkpoint."""

    method: str
    steps: int
    variant: str = ""  # suite variant name; "" for the method's preset
    overrides: tuple[tuple[str, Any], ...] = ()  # config --set items that select the checkpoint
    sampler: tuple[tuple[str, Any], ...] = ()  # sampler options


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    name: str
    suite: str
    dataset: str
    preset: str
    cells: tuple[Cell, ...]
    num_samples: int
    seed: int
    sample_batch: int
    timing: TimingSpec
    data_root: str = ""
    bpd_images: int = 10_000  # test images scored for bits/dim (methods with a likelihood, image data)
    metrics: MetricOptions = MetricOptions()  # image metrics (toy data ignores them)
    notes: tuple[str, ...] = ()  # for the report; no effect on the numbers

    def grid_dict(self) -> dict[str, Any]:
        """Everything that determines the numbers (not where they are written)."""
        d = dataclasses.asdict(self)
        for key in ("name", "data_root", "notes"):
            d.pop(key)
        if get_dataset_info(self.dataset).kind != "image":
            d.pop("metrics")  # toy metrics have no options
        return json.loads(json.dumps(d))

    def grid_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.grid_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def run_config(self, cell: Cell) -> RunConfig:
        """The training configuration of the checkpoint a cell samples."""
        cls = methods.get_method(cell.method)
        trained = methods.get_method(cls.checkpoint_name())
        sets = {**dict(cell.overrides), **{f"model.{k}": v for k, v in cls.steps_overrides(cell.steps).items()}}
        if self.data_root:
            sets["data.root"] = self.data_root
        return resolve_run_config(trained.name, model_cls=trained.Config, preset=self.preset, dataset=self.dataset,
                                  sets=sets)


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name: str) -> Path:
    """A suite by name (bench/suites/<name>.toml) or a path to your own TOML file."""
    return Path(name) if name.endswith(".toml") else SUITES_DIR / f"{name}.toml"


def load_suite(name: str) -> dict[str, Any]:
    path = suite_path(name)
    if not path.exists():
        raise BenchError(f"unknown suite {name!r}; choose from: {', '.join(list_suites())}, or a path to a .toml file")
    return load_toml(path, "suite")


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BenchError(f"{what} is empty; give e.g. {what}=1,4,16")
    return values


def parse_names(text: str, what: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise BenchError(f"{what} is empty")
    return names


def _sections(cls: type) -> dict[str, type]:
    return {"model": methods.get_method(cls.checkpoint_name()).Config, "data": DataConfig, "train": TrainConfig}


def _base_model(cls: type, preset: str, dataset: str, overrides: dict[str, Any]) -> Any:
    trained = methods.get_method(cls.checkpoint_name())
    return resolve_run_config(trained.name, model_cls=trained.Config, preset=preset, dataset=dataset,
                              sets=overrides).model


def _method_or_error(name: str, variants: dict) -> type:
    try:
        return methods.get_method(name)
    except ValueError:
        extra = f"; this suite's variants: {', '.join(variants)}" if variants else ""
        raise BenchError(f"unknown method {name!r}; choose from: {', '.join(methods.list_methods())}{extra}") from None


def _steps_for(name: str, cls: type, wanted: list[int], base: Any, *, strict: bool) -> list[int]:
    """Valid step counts among `wanted`. Suite grids must be all valid (strict); --steps keeps
    each method's valid values and is an error only when it leaves a method with none."""
    keep, errors = [], []
    for s in wanted:
        cfg = dataclasses.replace(base, **cls.steps_overrides(s)) if cls.steps_are_trained else base
        try:
            cls.check_config(cfg)  # a trained step count (DDGAN's T) must be trainable
            error = cls.valid_steps(cfg).error(s)
        except ValueError as e:
            error = str(e)
        (errors.append(error) if error else keep.append(s))
    if errors and (strict or not keep):
        hint = "" if strict else f"; none of --steps {','.join(map(str, wanted))} applies: add a valid value or drop {name}"
        raise BenchError(f"{name}: {errors[0]}{hint}")
    return keep


def sampler_options(cls: type, opts: dict, name: str) -> dict:
    if not opts:
        return {}
    if cls.SamplerConfig is None:
        raise BenchError(f"{name} takes no sampler options, got {', '.join(opts)}")
    return dataclasses.asdict(build(cls.SamplerConfig, opts, f"sampler.{name}."))


def _build(suite: str, raw: dict[str, Any], *, names: list[str] | None = None, dataset: str | None = None,
           steps: list[int] | None = None, num_samples: int | None = None, seed: int | None = None,
           data_root: str = "") -> CompareSpec:
    dataset = dataset or raw.get("dataset", "gaussians25")
    info = get_dataset_info(dataset)
    metrics = build(MetricOptions, raw.get("metrics", {}), "metrics.")
    validate_options(metrics)
    preset = raw.get("preset") or info.preset
    variants = raw.get("variants", {})
    num_samples = raw.get("num_samples", 5000) if num_samples is None else num_samples
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise BenchError(f"--num-samples must be in 1..{MAX_SAMPLES}, got {num_samples}")
    if int(raw.get("bpd_images", 10_000)) < 1:
        raise BenchError(f"bpd_images must be >= 1, got {raw['bpd_images']}")
    if steps is not None and any(s < 1 for s in steps):
        raise BenchError(f"--steps must be positive integers, got {','.join(map(str, steps))}")
    cells: list[Cell] = []
    for name in dict.fromkeys(names or list(raw.get("methods", [])) + list(variants)):  # each name once
        var = variants.get(name, {})
        method_name = var.get("method", name)
        cls = _method_or_error(method_name, variants)
        overrides = qualify(var.get("set", {}), _sections(cls))
        base = _base_model(cls, preset, dataset, overrides)
        wanted = steps or var.get("steps") or raw.get("steps", {}).get(method_name) or [cls.default_steps(base)]
        opts = sampler_options(cls, {**raw.get("sampler", {}).get(method_name, {}), **var.get("sampler", {})}, name)
        for s in _steps_for(name, cls, list(wanted), base, strict=steps is None):
            cells.append(Cell(method=method_name, steps=s, variant=name if name != method_name else "",
                              overrides=tuple(sorted(overrides.items())), sampler=tuple(sorted(opts.items()))))
    return CompareSpec(name=suite_path(suite).stem, suite=suite, dataset=dataset, preset=preset, cells=tuple(cells),
                       num_samples=num_samples, seed=raw.get("seed", 0) if seed is None else seed,
                       sample_batch=int(raw.get("sample_batch", 1000)),
                       timing=build(TimingSpec, raw.get("timing", {}), "timing."), data_root=data_root,
                       bpd_images=int(raw.get("bpd_images", 10_000)), metrics=metrics,
                       notes=tuple(raw.get("notes", ())))


def resolve_compare_spec(*, suite: str | None = None, methods_: list[str] | None = None, dataset: str | None = None,
                         steps: list[int] | None = None, num_samples: int | None = None, seed: int | None = None,
                         data_root: str = "") -> CompareSpec:
    """The suite's grid with command-line overrides; every error is raised before anything runs.

    The result is named after the suite when the grid is the suite's own, else
    `<suite>-<grid hash>`, so different grids never write into one folder."""
    if suite is None:
        suite = get_dataset_info(dataset).suite if dataset else "toy"
    raw = load_suite(suite)
    spec = _build(suite, raw, names=methods_, dataset=dataset, steps=steps, num_samples=num_samples, seed=seed,
                  data_root=data_root)
    try:
        own = _build(suite, raw).grid_hash()
    except BenchError:  # the suite's own grid needs a dataset argument (the folder suite)
        own = None
    if spec.grid_hash() != own:
        spec = dataclasses.replace(spec, name=f"{spec.name}-{spec.grid_hash()[:6]}")
    return spec
