"""The per-mode spread ratio (bench/metrics/spread.py) and its reading: a metric added as one file plus a
registration, and a reading that uses it, each checked against samples whose width is known."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from bench.data.toy2d import gaussians25
from bench.metrics.catalog import ToyTarget, get_metric
from bench.metrics.spread import TRUNCATED_VAR, mode_spread
from bench.report.readings.registry import Results
from bench.report.readings.spread import spread
from bench.results.schema import COLUMNS, METRIC


def _target(n: int = 20_000):
    mix = gaussians25()
    return mix, ToyTarget(reference=mix.sample(n, torch.Generator().manual_seed(1)), mixture=mix)


def test_the_truncated_variance_matches_a_monte_carlo_draw():
    r2 = torch.randn(2_000_000, 2, generator=torch.Generator().manual_seed(0)).pow(2).sum(1)
    assert float(r2[r2 < 9].mean() / 2) == pytest.approx(TRUNCATED_VAR, abs=2e-3)


@pytest.mark.parametrize("scale", [1.0, 0.5, 1.3])
def test_samples_drawn_at_a_known_width_score_that_width(scale):
    """Samples from the mixture with every mode's deviation scaled by s: the ratio reads s under the same 3-std
    cut as the reference (a mode drawn wider loses more of its tails to the cut), and the error is |log ratio|."""
    mix, target = _target()
    x, k = mix.sample_labelled(20_000, torch.Generator().manual_seed(2))
    x = mix.means[k] + scale * (x - mix.means[k])
    out = mode_spread(x, target)
    a = 4.5 / scale ** 2  # the cut at 3 true std, in the scaled mode's own units
    expected = math.sqrt(scale ** 2 * (1 - (1 + a) * math.exp(-a)) / (1 - math.exp(-a)) / TRUNCATED_VAR)
    assert out["mode_spread"] == pytest.approx(expected, rel=0.03)
    assert out["spread_error"] == pytest.approx(abs(math.log(out["mode_spread"])), abs=0.03)


def test_the_high_quality_fraction_cannot_see_narrow_modes_the_spread_can():
    mix, target = _target()
    x, k = mix.sample_labelled(20_000, torch.Generator().manual_seed(3))
    narrow = mix.means[k] + 0.3 * (x - mix.means[k])
    hq = get_metric("hq_fraction").compute
    assert hq(narrow, target) >= hq(x, target)  # every narrow sample is "high quality"
    assert mode_spread(narrow, target)["spread_error"] > 1.0 > 0.05 > mode_spread(x, target)["spread_error"]


def test_no_covered_mode_gives_no_number():
    _, target = _target()
    assert math.isnan(mode_spread(torch.full((500, 2), 100.0), target)["mode_spread"])


def test_registered_with_its_facts_and_columns():
    m = METRIC["spread_error"]
    assert m.direction == "lower" and m.needs == ("mixture",) and "2-D" in m.features
    assert COLUMNS.index("mode_spread") == COLUMNS.index("spread_error") + 1


def test_the_reading_names_narrow_and_wide_rows_against_the_floor(tmp_path):
    rows = pd.DataFrame([
        {"sampler": "data", "label": "data (floor)", "mode_spread": 0.99},
        {"sampler": "ddim", "label": "ddim-2", "mode_spread": 0.55},
        {"sampler": "ddpm", "label": "ddpm-1000", "mode_spread": 1.01},
        {"sampler": "euler-a", "label": "euler-a-4", "mode_spread": 1.4},
    ])
    text = spread(Results(rows=rows, per_seed=rows, seeded=False, folder=tmp_path), {})
    assert "the data floor's 0.990" in text
    assert "- Too narrow: ddim-2 0.55." in text and "- Too wide: euler-a-4 1.40." in text
    assert "- Neither: 1 of 3 rows." in text
    assert spread(Results(rows=rows.drop(columns="mode_spread"), per_seed=rows, seeded=False, folder=tmp_path),
                  {}) is None
    unscored = rows.assign(mode_spread=float("nan"))  # results written before the metric existed
    assert spread(Results(rows=unscored, per_seed=unscored, seeded=False, folder=tmp_path), {}) is None


def test_with_intervals_the_reading_names_a_row_only_when_its_interval_clears_the_floors(tmp_path):
    """Intervals decide, not the 10% rule: a row 5% narrow with a tight interval is named, one 15% narrow whose
    interval reaches the floor's is not."""
    ci = lambda lo, hi: f'{{"mode_spread": [{lo}, {hi}]}}'  # noqa: E731  (the bootstrap_ci column's JSON)
    rows = pd.DataFrame([
        {"sampler": "data", "label": "data (floor)", "mode_spread": 1.0, "bootstrap_ci": ci(0.98, 1.02)},
        {"sampler": "ddim", "label": "ddim-1000", "mode_spread": 0.95, "bootstrap_ci": ci(0.93, 0.97)},
        {"sampler": "ddim", "label": "ddim-3", "mode_spread": 0.85, "bootstrap_ci": ci(0.6, 0.99)},
    ])
    text = spread(Results(rows=rows, per_seed=rows, seeded=False, folder=tmp_path), {})
    assert "- Too narrow: ddim-1000 0.95 [0.93, 0.97]." in text and "ddim-3" not in text
    assert "the data floor's 1.000 [0.980, 1.020]" in text and "- Neither: 1 of 2 rows." in text
