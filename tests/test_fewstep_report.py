"""The few-step reading: consistency rows against the GAN rows and the best solver within their NFE."""

from pathlib import Path

import pandas as pd

from bench.report.readings.fewstep import fewstep, fewstep_reading
from bench.report.readings.registry import Results

COLS = ["hq_fraction", "swd", "modes"]


def _row(label, sampler, model, nfe, hq, swd, modes, ms, step=1000):
    return dict(label=label, sampler=sampler, model=model, nfe_measured=nfe, hq_fraction=hq, swd=swd,
                modes=modes, sample_ms_per_100=ms, checkpoint_step=step, variant=None)


def _table():
    return pd.DataFrame([
        dict(label="data (floor)", sampler="data", model=None, nfe_measured=None, hq_fraction=0.99, swd=0.08,
             modes=25, sample_ms_per_100=None, checkpoint_step=None, variant=None),
        _row("cm-1", "cm", "cm", 1, 0.55, 0.12, 25, 1.0),
        _row("ddgan-T4", "ddgan", "ddgan", 4, 0.94, 0.17, 25, 3.0),
        _row("unipc-1", "unipc", "ddpm", 1, 0.02, 1.2, 0, 1.3),
        _row("unipc-4", "unipc", "ddpm", 4, 0.06, 0.05, 0, 4.2),  # better W1, but beyond cm-1's budget
        _row("ddim-1@oracle", "ddim", "oracle", 1, 0.5, 0.01, 25, 1.0, step=None),  # no network: not a solver row
    ])


def test_each_consistency_row_is_compared_with_the_gan_and_the_best_solver_within_its_nfe():
    lines = fewstep_reading(_table(), COLS)
    gan = next(line for line in lines if "against **ddgan-T4**" in line)
    assert "better on sliced W1 to data (0.120 vs 0.170)" in gan
    assert "worse on high-quality fraction (0.550 vs 0.940)" in gan
    assert "equal on modes covered (25 vs 25)" in gan
    assert "3.0× faster" in gan
    solver = next(line for line in lines if "best solver" in line)
    assert "**unipc-1**" in solver and "unipc-4" not in solver and "oracle" not in solver
    assert "better on high-quality fraction (0.550 vs 0.020)" in solver


def test_nothing_is_said_without_consistency_rows_or_anything_to_compare_with():
    df = _table()
    assert fewstep_reading(df[df["model"] != "cm"], COLS) == []
    assert fewstep_reading(df[df["model"].isin(["cm", None])], COLS) == []


def test_unknown_model_names_from_a_foreign_folder_are_skipped():
    df = _table()
    df.loc[df["label"] == "ddgan-T4", "model"] = "not-a-model"
    lines = fewstep_reading(df, COLS)
    assert lines and not any("ddgan-T4" in line for line in lines)


def test_the_registered_reading_is_the_same_lines_as_bullets():
    df = _table()
    text = fewstep(Results(rows=df, per_seed=df, seeded=False, folder=Path(".")), {})
    assert text is not None and text.startswith("- Few-step models compared metric by metric")
    assert fewstep(Results(rows=df[df["model"] != "cm"], per_seed=df, seeded=False, folder=Path(".")), {}) is None
