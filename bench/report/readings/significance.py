"""Which differences between rows the seeds resolve: for each metric and sampler family, the pairs of
rows whose 95% intervals over training seeds do not overlap (bench/results/stats.py). Only with seeds."""

from __future__ import annotations

from bench.report.readings.registry import Results, as_bullets, register
from bench.report.tables import sampler_columns
from bench.results import stats


@register("significance", order=70)
def significance(results: Results, spec: dict) -> str | None:
    return as_bullets(stats.significance_lines(results.rows, sampler_columns(results.rows, spec)))
