"""The reading registry: one signature, registration order, a new reading joins the report by registering,
and the one markdown table helper."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import bench.report.render  # noqa: F401  (imports every reading, so that they register)
from bench.report.readings import registry
from bench.report.readings.registry import Figure, Results, as_bullets, register
from bench.report.render import load, render_report
from bench.report.tables import markdown_table
from bench.results.schema import COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _results(df: pd.DataFrame, folder: Path = Path(".")) -> Results:
    return Results(rows=df, per_seed=df, seeded=False, folder=folder)


def _folder(tmp_path: Path) -> Path:
    rows = [{"method": "data", "label": "data (floor)", "seed": 0, "num_samples": 10},
            *({"method": "ddim", "label": f"ddim-{s}", "steps": s, "nfe_measured": s, "nfe_declared": s,
               "sample_ms_per_100": 10.0 * s, "sample_ms_per_100_std": 1.0, "sampler_efficiency": 0.9}
              for s in (10, 100))]
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / "results.csv", index=False)
    (tmp_path / "spec.json").write_text(json.dumps({"name": "t", "suite": "t", "dataset": "toy", "preset": "p",
                                                    "grid": {"timing": {}}}))
    return tmp_path


def test_every_reading_registers_once_with_a_name_and_a_place():
    names = [r.name for r in registry.registered()]
    assert len(names) == len(set(names))
    assert {"guidance", "overview", "straightening", "fewstep", "budgets", "schedules", "significance",
            "latent", "best-per-budget", "orders"} <= set(names)
    assert [r.title for r in registry.sections()] == [
        "Latent space", "Best sampler within each NFE budget", "Measured orders on the exact score", "Few-step generators",
        "Mode spread"]
    files = [f.file for f in registry.figures()]
    assert len(files) == len(set(files))


def test_a_second_reading_under_a_taken_name_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        register("overview", order=1)(lambda results, spec: None)


def test_readings_that_do_not_apply_return_none():
    df, spec = load(REPO / "results" / "toy")
    results = _results(df, REPO / "results" / "toy")
    for name in ("latent", "orders", "straightening", "fewstep", "guidance", "schedules", "significance"):
        reading = next(r for r in registry.registered() if r.name == name)
        assert reading.read(results, spec) is None, name


def test_a_new_reading_joins_the_report_by_registering(tmp_path, monkeypatch):
    """One registration (here into a copy of the registry) puts a section, a bullet and a figure on the page."""
    monkeypatch.setattr(registry, "_READINGS", dict(registry._READINGS))

    def draw(results, spec, path):
        path.write_bytes(b"png")
        return True

    register("test-section", order=99, title="A new section", figures=(Figure("new.png", draw, 99),))(
        lambda results, spec: f"{len(results.rows)} rows")
    register("test-bullets", order=99)(lambda results, spec: as_bullets(["a new line"]))
    text = render_report(_folder(tmp_path), tmp_path).read_text()
    assert "## A new section\n\n3 rows\n\n## Metrics" in text
    assert "- a new line\n\n## Figures" in text
    assert text.rstrip().endswith("![new](new.png)")


def test_an_unreadable_optional_file_is_no_table(tmp_path):
    (tmp_path / "orders.csv").write_bytes(b'\x00\xff a,b\n"open')
    results = _results(pd.DataFrame(), tmp_path)
    assert results.table("orders.csv") is None and results.table("absent.csv") is None


def test_markdown_table_keeps_the_reports_bytes():
    assert markdown_table(["a", "b"], [["1", "2"], ["3", ""]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 |  |"
    assert markdown_table(["a", ""], []) == "| a | |\n|---|---|"
