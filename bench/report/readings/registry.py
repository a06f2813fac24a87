"""The reading registry: every reading registers once, at import, with one signature

    read(results: Results, spec: dict) -> str | None

returning markdown (None when the reading does not apply to these results). A reading with a `title`
is its own `## title` section after the main table; one without is bullet lines under `## Reading`.
Render owns the headings and the blank lines around them, so a reading returns its body only.

Adding a reading: one new file in bench/report/readings/ whose reading is decorated with `@register(...)`,
plus one import line in bench/report/render.py (the block marked "readings register at import").
A figure that belongs to a reading registers with it (`figures=`), drawn by `(results, spec, path) -> bool`.

Readings are pure functions of a results folder: they must not import bench.measure or bench.runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd


@dataclasses.dataclass(frozen=True, eq=False)
class Results:
    """All a reading may read: a report is a pure function of the results folder."""

    rows: pd.DataFrame  # the report's table: means over seeds when `seeded`, sorted, the floor row first
    per_seed: pd.DataFrame  # results.csv as written (one row per training seed)
    seeded: bool  # whether `rows` are aggregates over seeds (columns X_lo, X_hi: 95% intervals)
    folder: Path  # the results folder, for the files beside results.csv (orders.csv, diagnostics/)

    def table(self, name: str) -> pd.DataFrame | None:
        """A CSV beside results.csv (e.g. orders.csv); None when it is absent or unreadable, since a
        results folder is untrusted input and an optional file must not stop the report."""
        path = self.folder / name
        if not path.is_file():
            return None
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            return None


Read = Callable[[Results, dict], "str | None"]
Draw = Callable[[Results, dict, Path], bool]


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure file of the report; `draw` writes it to the path given and returns False (no file)
    when there is nothing to draw. The report lists its figures by `order`."""

    file: str
    draw: Draw
    order: int


@dataclasses.dataclass(frozen=True)
class Reading:
    name: str
    read: Read
    order: int  # position among the readings of its kind (sections, or bullet lines under ## Reading)
    title: str | None = None  # a section's heading; None: bullet lines under ## Reading
    figures: tuple[Figure, ...] = ()


_READINGS: dict[str, Reading] = {}


def register(name: str, *, order: int, title: str | None = None,
             figures: tuple[Figure, ...] = ()) -> Callable[[Read], Read]:
    """Decorator: register `read` once under `name` (a second, different reading of that name is an error)."""

    def add(read: Read) -> Read:
        old = _READINGS.get(name)
        if old is not None and (old.read.__module__, old.read.__qualname__) != (read.__module__, read.__qualname__):
            raise ValueError(f"reading {name!r} is registered twice ({old.read.__module__}, {read.__module__})")
        _READINGS[name] = Reading(name, read, order, title, tuple(figures))
        return read

    return add


def registered() -> list[Reading]:
    """Every registered reading, in report order."""
    return sorted(_READINGS.values(), key=lambda r: (r.order, r.name))


def sections() -> list[Reading]:
    """Readings that are sections of their own, in report order."""
    return [r for r in registered() if r.title is not None]


def bullets() -> list[Reading]:
    """Readings that are bullet lines under ## Reading, in report order."""
    return [r for r in registered() if r.title is None]


def figures() -> list[Figure]:
    """The figures registered with readings."""
    return [f for r in registered() for f in r.figures]


def as_bullets(lines: list[str]) -> str | None:
    """Lines as markdown bullets; None for no lines (the reading does not apply)."""
    return "\n".join(f"- {line}" for line in lines) if lines else None
