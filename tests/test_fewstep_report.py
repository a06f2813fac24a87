"""The few-step reading: its two questions, rows grouped by registration, and "better" only where intervals
over seeds do not overlap."""

from pathlib import Path

import pandas as pd

from bench.report.readings.fewstep import families, fewstep, fewstep_reading
from bench.report.readings.registry import Results

COLS = ["hq_fraction", "swd", "modes"]


def _row(label, sampler, model, nfe, hq, swd, modes, ms, step=1000, variant=None):
    return dict(label=label, sampler=sampler, model=model, nfe_measured=nfe, hq_fraction=hq, swd=swd,
                modes=modes, sample_ms_per_100=ms, checkpoint_step=step, variant=variant)


def _table():
    return pd.DataFrame([
        dict(label="data (floor)", sampler="data", model=None, nfe_measured=None, hq_fraction=0.99, swd=0.08,
             modes=25, sample_ms_per_100=None, checkpoint_step=None, variant=None),
        _row("cm-1", "cm", "cm", 1, 0.55, 0.12, 25, 1.0),
        _row("ddgan-T4", "ddgan", "ddgan", 4, 0.94, 0.17, 25, 3.0),
        _row("ddgan-T8", "ddgan", "ddgan", 8, 0.95, 0.16, 25, 6.0),  # beyond "2-4 steps"
        _row("unipc-1", "unipc", "ddpm", 1, 0.02, 1.2, 0, 1.3),
        _row("unipc-4", "unipc", "ddpm", 4, 0.06, 0.05, 0, 4.2),  # better W1, but beyond cm-1's budget
        _row("ddim-1@oracle", "ddim", "oracle", 1, 0.5, 0.01, 25, 1.0, step=None),  # no network: not a solver row
        _row("2-rf-1", "flow", "flow", 1, 0.7, 0.2, 25, 1.0, variant="2-rf"),
        _row("flow-1", "flow", "flow", 1, 0.4, 1.5, 1, 1.0),
    ])


SPEC = {"cells": [{"method": "flow", "variant": "2-rf", "steps": 1, "key_params": {"reflow": 1}},
                  {"method": "flow", "variant": None, "steps": 1, "key_params": {"reflow": 0}}]}


def test_rows_are_grouped_by_registration_and_key_params_not_by_name():
    df = _table()
    rows = df[df["sampler"] != "data"]
    fam = dict(zip(rows["label"], families(rows, SPEC)))
    assert fam["cm-1"] == "few-step" and fam["ddgan-T4"] == "gan" and fam["unipc-1"] == "solver"
    assert fam["2-rf-1"] == "few-step" and fam["flow-1"] == "solver"  # reflow = 1 from spec.json's key params
    assert fam["ddim-1@oracle"] == "exact"


def test_one_seed_shows_values_and_calls_no_difference_better():
    lines = fewstep_reading(_table(), COLS, SPEC, seeded=False)
    text = "\n".join(lines)
    assert "Does a 1-2 step model beat DDGAN at 2-4 steps?" in text and "ddgan-T8" not in text
    gan = next(line for line in lines if line.startswith("**cm-1** (1 NFE) against **ddgan-T4**"))
    assert "untested: high-quality fraction (0.550 vs 0.940)" in gan
    assert "better" not in gan and "3.0× faster" in gan
    solver = next(line for line in lines if line.startswith("**cm-1**") and "unipc" in line)
    assert "**unipc-1** on ddpm" in solver and "unipc-4" not in solver and "oracle" not in solver
    assert any(line.startswith("**2-rf-1** (1 NFE)") for line in lines)
    assert not any(line.startswith("**flow-1**") for line in lines)  # a plain flow is a solver row


def test_with_seeds_better_only_where_the_intervals_do_not_overlap():
    df = _table()
    for col, lo, hi in (("hq_fraction", -0.05, 0.05), ("swd", -0.01, 0.01), ("modes", -0.5, 0.5)):
        df[f"{col}_lo"], df[f"{col}_hi"] = df[col] + lo, df[col] + hi
    df.loc[df["label"] == "cm-1", ["swd_lo", "swd_hi"]] = [0.10, 0.20]  # overlaps ddgan-T4's 0.16..0.18
    df["n_seeds"] = 3
    lines = fewstep_reading(df, COLS, SPEC, seeded=True)
    gan = next(line for line in lines if line.startswith("**cm-1** (1 NFE)") and "ddgan-T4" in line)
    assert gan.startswith("**cm-1** (1 NFE) ties (the intervals overlap) with **ddgan-T4** (4 NFE) on sliced W1")
    assert "worse on high-quality fraction (0.550 ± 0.050 vs 0.940 ± 0.050)" in gan
    assert "not distinguishable on sliced W1" in gan and "modes covered" in gan
    solver = next(line for line in lines if line.startswith("**cm-1**") and "unipc-1" in line)
    assert "beats **unipc-1** on ddpm (1 NFE) on sliced W1" in solver
    assert "better on high-quality fraction" in solver


def test_nothing_is_said_without_few_step_rows_or_anything_to_compare_with():
    df = _table()
    assert fewstep_reading(df[~df["label"].isin(["cm-1", "2-rf-1"])], COLS, SPEC) == []
    assert fewstep_reading(df[df["model"].isin(["cm", None])], COLS, SPEC) == []


def test_unknown_model_names_from_a_foreign_folder_are_skipped():
    df = _table()
    df.loc[df["label"] == "ddgan-T4", "model"] = "not-a-model"
    lines = fewstep_reading(df, COLS, SPEC)
    assert lines and not any("ddgan-T4" in line for line in lines)


def test_the_registered_reading_is_the_same_lines_as_bullets():
    df = _table()
    text = fewstep(Results(rows=df, per_seed=df, seeded=False, folder=Path(".")), SPEC)
    assert text is not None and text.startswith("- **Does a 1-2 step model beat DDGAN at 2-4 steps?**")
    none = df[~df["label"].isin(["cm-1", "2-rf-1"])]
    assert fewstep(Results(rows=none, per_seed=none, seeded=False, folder=Path(".")), SPEC) is None
