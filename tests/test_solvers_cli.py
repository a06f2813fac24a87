"""Solvers from the command line: the oracle needs no training, NFE budgets, sampling options that
never touch a checkpoint, and the report's best-sampler-per-budget table and reading."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from bench.config.spec import list_suites
from bench.config.resolve import resolve_compare_spec
from bench.config.requests import CompareRequest
from bench.report.readings.budgets import best_table, budget_reading, kendall_tau
from tests.conftest import invoke, request_of


def test_oracle_rows_need_no_training_and_budgets_are_met_or_said_not_to_be(tmp_path):
    out = tmp_path / "o"
    result = invoke(["compare", "--methods", "ddim,dpmpp-2m,unipc,heun", "--dataset", "gaussians25", "--model",
                     "oracle", "--nfe", "4,10", "--num-samples", "300", "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "runs").exists(), "the oracle trains nothing"
    df = pd.read_csv(out / "results.csv")
    rows = df[df["sampler"] != "data"]
    assert set(rows["model"]) == {"oracle"} and rows["checkpoint_step"].isna().all()
    assert sorted(rows["nfe_target"].unique()) == [4, 10]
    assert (rows["nfe_measured"] == rows["nfe_declared"]).all() and (rows["nfe_measured"] <= rows["nfe_target"]).all()
    heun = rows[rows["sampler"] == "heun"].set_index("nfe_target")
    assert heun.loc[4, "steps"] == 2 and heun.loc[4, "nfe_measured"] == 3  # 2N - 1 calls
    assert "NFE budget 4 not met exactly: heun makes 3 network calls at 2 steps" in heun.loc[4, "notes"]
    assert all(label.endswith("@oracle") for label in rows["label"])
    report = (out / "report.md").read_text()
    assert "## Best sampler within each NFE budget" in report and "oracle (exact score, no network)" in report


def test_sampling_options_change_rows_but_never_the_checkpoint(tmp_path, tiny_preset):
    suite = tmp_path / "options.toml"
    suite.write_text(textwrap.dedent(f"""
        description = "sampling options over one checkpoint"
        dataset = "gaussians25"
        preset = "{tiny_preset}"
        methods = ["ddim"]
        num_samples = 100
        sample_batch = 100
        [steps]
        ddim = [5]
        [variants.ddim-clip]
        method = "ddim"
        steps = [5]
        sampler = {{ clip_sample = true }}
        [variants.ddim-leading]
        method = "ddim"
        steps = [5]
        sampler = {{ timestep_spacing = "leading" }}
        [variants.euler-karras]
        method = "euler"
        steps = [5]
        sampler = {{ sigmas = "karras" }}
        [variants.dpmpp-2m-karras]
        method = "dpmpp-2m"
        steps = [5]
        sampler = {{ sigmas = "karras", lower_order_final = false }}
        [timing]
        batch = 10
        warmup = 1
        repeats = 3
        max_seconds = 1
    """))
    spec = resolve_compare_spec(CompareRequest(suite=str(suite)))
    assert len(spec.cells) == 5 and len({spec.run_config(c).run_id() for c in spec.cells}) == 1
    plain = resolve_compare_spec(CompareRequest(suite=str(suite), samplers=["ddim"]))
    assert plain.run_config(plain.cells[0]).run_id() == spec.run_config(spec.cells[0]).run_id()
    assert plain.grid_hash() != spec.grid_hash(), "sampling options change the grid, not the checkpoint"

    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(suite), "--out", str(out), "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.count("[train ") == 1 and len(list((tmp_path / "runs").iterdir())) == 1
    rows = pd.read_csv(out / "results.csv").set_index("label")
    assert rows["run_id"].dropna().nunique() == 1
    settings = {label: json.loads(s) for label, s in rows["sampler_settings"].dropna().items()}
    assert settings["ddim-clip-5"]["clip_sample"] is True and settings["ddim-5"]["clip_sample"] is False
    assert settings["ddim-leading-5"]["timestep_spacing"] == "leading"
    assert settings["euler-karras-5"]["use_karras_sigmas"] is True
    assert settings["dpmpp-2m-karras-5"]["lower_order_final"] is False


def test_unknown_sampler_options_and_tables_are_one_line_errors(tmp_path, tiny_preset):
    suite = tmp_path / "bad.toml"
    for body, message in [('[sampler.nope]\nx = 1', "unknown method 'nope'"),
                          ('[sampler.ddim]\nkarras = true', "unknown config key 'sampler.ddim.karras'"),
                          ('[sampler.ddim]\ntimestep_spacing = "cosine"', "unknown timestep_spacing 'cosine'"),
                          ('models = "oracle"', "models must be a non-empty list of names")]:
        suite.write_text(f'description = "x"\ndataset = "gaussians25"\npreset = "{tiny_preset}"\n'
                         f'{body if body.startswith("models") else ""}\nmethods = ["ddim"]\n[steps]\nddim = [2]\n'
                         f'{"" if body.startswith("models") else body}\n')
        result = invoke(["compare", "--suite", str(suite), "--out", str(tmp_path / "o"), "--no-progress"], tmp_path)
        assert result.exit_code == 2 and message in result.output, (body, result.output)
        assert not (tmp_path / "o").exists()


def rows(model: str, untrained: bool, swd: dict[str, float], nfe: int) -> list[dict]:
    return [{"sampler": s, "label": f"{s}-{nfe}@{model}", "variant": "", "model": model, "nfe_target": nfe,
             "nfe_measured": nfe, "swd": v, "checkpoint_step": None if untrained else 100} for s, v in swd.items()]


def test_best_table_and_reading_name_the_winner_per_budget_and_model_disagreements():
    df = pd.DataFrame(rows("oracle", True, {"ddim": 0.3, "dpmpp-2m": 0.1, "unipc": 0.2}, 10)
                      + rows("ddpm", False, {"ddim": 0.5, "dpmpp-2m": 0.4, "unipc": 0.3}, 10)
                      + rows("oracle", True, {"ddim": 0.2, "dpmpp-2m": 0.05, "unipc": 0.06}, 20))
    table = best_table(df)
    assert "| ≤ 10 | dpmpp-2m-10@oracle (sliced W1 to data 0.1) | unipc-10@ddpm (sliced W1 to data 0.3) |" in table
    assert "| ≤ 20 | dpmpp-2m-20@oracle (sliced W1 to data 0.05) | unipc-10@ddpm (sliced W1 to data 0.3) |" in table
    lines = " ".join(budget_reading(df))
    assert "oracle (exact score, no network)**: ≤ 10: dpmpp-2m (0.1); ≤ 20: dpmpp-2m (0.05)" in lines
    assert "At NFE 10 the models rank the samplers differently" in lines
    assert "oracle: dpmpp-2m, unipc, ddim; ddpm: unipc, dpmpp-2m, ddim" in lines
    assert "At NFE 20" not in lines  # only the oracle has rows there
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1 and kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in (REPO / "results").glob("*/spec.json")))
def test_committed_results_are_the_grids_their_suites_define(folder):
    """`bench compare --suite NAME` resumes into the committed results/NAME (it refuses a folder of another
    grid), so each committed folder must hold its suite's current grid, or, for a grid made with flags, the
    grid its recorded command asks for today."""
    spec = json.loads((REPO / "results" / folder / "spec.json").read_text())
    if spec["suite"] not in list_suites():
        pytest.skip(f"{folder} was written from a suite file outside bench/config/suites")
    assert resolve_compare_spec(request_of(spec)).grid_hash() == spec["grid_hash"], folder
