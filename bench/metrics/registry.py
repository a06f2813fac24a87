"""Metric registry: every metric registers once, with its facts, and everything else reads them.

A registration says what a metric is (column, header, direction, format), where it lives
(`kind`: its block of results.csv and who computes it; `features`: the space it is computed in),
what it needs, and, for toy metrics, the function that computes it. The schema (bench/results/
schema.py) derives its metric columns, METRICS and INTEGER from here; `evaluate` computes every
registered toy metric; the report heads, orders and formats columns by these facts.

The metric modules are imported in bench/metrics/catalog.py (one import line each). Read the
registry through the catalog, which imports them all first, or a module may be missing.

A toy metric is one file in bench/metrics/ holding its function, `fn(samples, target) -> float`
(target: a ToyTarget), and one `register_metric(..., kind="toy", compute=fn)` call, plus its name
on the catalog's import line. Registration checks the facts, so a bad one fails at import time.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable

import torch

from bench.data.toy2d import Mixture

# kind: who computes a metric and its block of results.csv (bench/results/schema.py)
KINDS = ("toy", "image", "classifier", "exact", "conditional", "likelihood")
GROUPS = ("quality", "coverage", "likelihood")  # the report's grouping
NEEDS = {  # what a metric needs, in words for docs and notes
    "mixture": "a Gaussian-mixture toy dataset (gaussians25, gaussians8, gaussians4)",
    "images": "image data",
    "inception": "the Inception-v3 weights (torch-fidelity)",
    "prc_network": "the VGG16 or the Inception-v3 weights",
    "classifier": "MNIST-family data and bench's classifier",
    "labels": "the classes asked of a class-conditional model",
    "likelihood": "a model with a likelihood bound",
    "oracle": "the exact-score data oracle",
}
TOY_NEEDS = ("mixture",)  # what evaluate() can check for a toy metric: skipped with a note when absent
COLUMN = re.compile(r"[a-z][a-z0-9_]*")
# the report lists sample metrics by group, then conditional ones, then likelihood (see report_key)
SECTION = {"image": 0, "classifier": 0, "exact": 0, "toy": 0, "conditional": 1, "likelihood": 2}
REPORT_KINDS = ("image", "classifier", "exact", "toy", "conditional", "likelihood")


@dataclasses.dataclass(frozen=True)
class ToyTarget:
    """What toy metrics score samples against: `reference`, fresh data of the samples' size (seeded,
    bench/metrics/evaluate.py), and the data's mixture (None for data that is not one)."""

    reference: torch.Tensor
    mixture: Mixture | None


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric's registration. The first seven fields keep the report's meaning and order."""

    column: str
    header: str
    group: str  # quality | coverage | likelihood
    higher_is_better: bool
    fmt: str
    per_sampler: bool = True  # False: a property of the checkpoint (same at every step count), not plotted vs NFE
    log_scale: bool = False  # a distance spanning decades: drawn on a log axis
    kind: str = ""  # KINDS: who computes it, and its block of results.csv
    position: int = 0  # its place among its kind's metrics in results.csv (and the report)
    features: str = ""  # the space it is computed in, in words
    needs: tuple[str, ...] = ()  # NEEDS keys
    extra: tuple[str, ...] = ()  # further columns it writes, after its own (kid_std, classes_asked)
    integer: tuple[str, ...] = ()  # its columns written as integers
    compute: Callable | None = dataclasses.field(default=None, compare=False, repr=False)  # toy: fn(x, ToyTarget)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column, *self.extra)

    @property
    def direction(self) -> str:
        return "higher" if self.higher_is_better else "lower"


_REGISTRY: dict[str, Metric] = {}


def register_metric(column: str, *, header: str, kind: str, position: int, group: str, better: str, fmt: str,
                    features: str, needs: tuple[str, ...] = (), extra: tuple[str, ...] = (),
                    integer: tuple[str, ...] = (), log_scale: bool = False, per_sampler: bool = True,
                    compute: Callable | None = None) -> Metric:
    """Register a metric; `better` is "higher" or "lower". Returns the registration."""
    if better not in ("higher", "lower"):
        raise TypeError(f"metric {column!r}: better must be 'higher' or 'lower', got {better!r}")
    metric = Metric(column, header, group, better == "higher", fmt, per_sampler=per_sampler, log_scale=log_scale,
                    kind=kind, position=position, features=features, needs=tuple(needs), extra=tuple(extra),
                    integer=tuple(integer), compute=compute)
    _check(metric)
    _REGISTRY[column] = metric
    return metric


def _check(m: Metric) -> None:
    """Every fact of a registration, against itself and the metrics registered before it."""
    name = f"metric {m.column!r}"
    taken = {c: other.column for other in _REGISTRY.values() for c in other.columns}
    for col in m.columns:
        if not isinstance(col, str) or not COLUMN.fullmatch(col):
            raise TypeError(f"{name}: column {col!r} must be lower_snake_case")
        if col in taken:
            raise ValueError(f"{name}: column {col!r} is already registered (by {taken[col]!r})")
    if len(set(m.columns)) != len(m.columns):
        raise ValueError(f"{name}: its columns repeat: {m.columns}")
    if not m.header or m.header in {other.header for other in _REGISTRY.values()}:
        raise ValueError(f"{name}: header {m.header!r} must be given and unique")
    if m.kind not in KINDS or m.group not in GROUPS:
        raise TypeError(f"{name}: kind must be one of {KINDS} and group one of {GROUPS}")
    if not isinstance(m.position, int) or m.position < 1:
        raise TypeError(f"{name}: position must be an integer >= 1")
    clash = [o.column for o in _REGISTRY.values() if o.kind == m.kind and o.position == m.position]
    if clash:
        raise ValueError(f"{name}: position {m.position} among {m.kind} metrics is {clash[0]!r}'s; take"
                         f" {1 + max(o.position for o in _REGISTRY.values() if o.kind == m.kind)}")
    try:
        m.fmt.format(1.5)
    except (ValueError, IndexError, KeyError, AttributeError):
        raise TypeError(f"{name}: fmt {m.fmt!r} does not format a number") from None
    if not isinstance(m.features, str) or not m.features:
        raise TypeError(f"{name}: say which space it is computed in (features)")
    if not set(m.needs) <= set(NEEDS) or not set(m.integer) <= set(m.columns):
        raise TypeError(f"{name}: needs must be among {sorted(NEEDS)} and integer among its columns {m.columns}")
    if (m.kind == "toy") != callable(m.compute):
        raise TypeError(f"{name}: a toy metric gives its function (compute); other kinds are computed by their"
                        " evaluator and give none")
    if m.kind == "toy" and not set(m.needs) <= set(TOY_NEEDS):
        raise TypeError(f"{name}: a toy metric may need only {TOY_NEEDS}, which evaluate() checks")


def get_metric(column: str) -> Metric:
    try:
        return _REGISTRY[column]
    except KeyError:
        raise ValueError(f"unknown metric {column!r}; choose from: {', '.join(sorted(_REGISTRY))}") from None


def list_metrics(kind: str | None = None) -> list[Metric]:
    """The registered metrics (of one kind), in results.csv order: by kind, then position."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown metric kind {kind!r}; choose from: {', '.join(KINDS)}")
    chosen = [m for m in _REGISTRY.values() if kind is None or m.kind == kind]
    return sorted(chosen, key=lambda m: (KINDS.index(m.kind), m.position))


def metric_columns(kind: str) -> list[str]:
    """Every column the metrics of one kind write, in results.csv order (each metric's extras after it)."""
    return [c for m in list_metrics(kind) for c in m.columns]


def integer_columns() -> set[str]:
    return {c for m in _REGISTRY.values() for c in m.integer}


def report_key(m: Metric) -> tuple:
    """The report's order: sample metrics by group (quality, then coverage; image spaces before toy ones),
    then conditional metrics, then likelihood; within those, by kind and position."""
    section = SECTION[m.kind]
    return section, GROUPS.index(m.group) if section == 0 else 0, REPORT_KINDS.index(m.kind), m.position


def score_toy(m: Metric, x: torch.Tensor, target: ToyTarget) -> dict[str, float]:
    """A toy metric's columns on samples `x`: its function returns its value, or a dict of its columns."""
    value = m.compute(x, target)
    out = value if isinstance(value, dict) else {m.column: value}
    if not set(out) <= set(m.columns):
        raise ValueError(f"metric {m.column!r} returned columns {sorted(out)}, not among its columns {m.columns}")
    return out
