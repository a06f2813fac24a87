"""Hostile input beyond suite files: run names from dataset paths, layer widths, early metric checks,
sample-file headers, untrusted results folders for `bench report`, and property-based tests
(hypothesis, a fixed-seed profile: tests/conftest.py) of suite files, --set values and sample files.

Every case ends in exit 0, or exit 2 with exactly one `error:` line, no traceback, and no new file."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bench.config.run import DataConfig, RunConfig, TrainConfig
from bench.errors import BenchError
from tests.conftest import files_under, invoke, one_error_line, tiny_model_config

REPO = Path(__file__).resolve().parents[1]


def _outcome(result) -> None:
    """exit 0, or one `error:` line with exit 2; never a traceback."""
    assert "Traceback" not in result.output
    if result.exit_code != 0:
        one_error_line(result)


# --- run names -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["folder:/../../x", "folder:../../etc", "folder:/a/b/cats/", "folder:", "folder:/",
                                  "folder:C:\\data\\dogs", "folder:/tmp/" + "a" * 300])
def test_a_folder_dataset_never_puts_its_path_in_a_run_name(name, tmp_path):
    from bench.config.run import run_dir_for

    cfg = RunConfig(model_name="ddpm", preset="", model=tiny_model_config("ddpm"), data=DataConfig(name=name),
                    train=TrainConfig())
    run_dir = run_dir_for(cfg, tmp_path / "runs")
    assert run_dir.parent == tmp_path / "runs" and ".." not in run_dir.name and "/" not in run_dir.name
    assert len(run_dir.name) <= 120 and run_dir.name.startswith(cfg.run_id())
    other = RunConfig(model_name="ddpm", preset="", model=cfg.model, data=DataConfig(name=name + "2"), train=cfg.train)
    assert run_dir_for(other, tmp_path / "runs") != run_dir  # the run id hashes the full path


def test_ordinary_run_names_are_unchanged():
    cfg = RunConfig(model_name="ddgan", preset="toy", model=tiny_model_config("ddgan"), data=DataConfig(),
                    train=TrainConfig())
    assert cfg.run_name(("T",)) == f"{cfg.run_id()}-ddgan-gaussians25-T2"


# --- layer widths, early metric checks, sample headers --------------------------------------------

@pytest.mark.parametrize("setting", ["model.net.hidden=100000000", "model.net.hidden=0", "model.net.emb_dim=-4"])
def test_absurd_layer_widths_are_refused_before_any_work(setting, tmp_path):
    line = one_error_line(invoke(["train", "ddpm", "--set", setting], tmp_path))
    assert "must be in 1..16384 (a layer width)" in line
    assert files_under(tmp_path) == []


def _huge_header_file(path: Path) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 2)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("samples.npy", header.getvalue())
    return path


def test_a_sample_file_declaring_a_huge_shape_is_refused_before_reading(tmp_path):
    f = _huge_header_file(tmp_path / "huge.npz")
    line = one_error_line(invoke(["evaluate", str(f), "--dataset", "gaussians25", "--out", str(tmp_path / "o")],
                                 tmp_path))
    assert "declares shape (1000000000000, 2)" in line and "at most 4 GiB" in line
    assert not (tmp_path / "o").exists()


def test_image_metrics_state_their_minimum_before_any_work(tmp_path):
    import torch

    from bench.data.images import ImageData
    from bench.metrics.evaluate import MetricOptions, MetricResources, image_evaluator

    data = ImageData(name="tiny", train_x=torch.zeros(20, 1, 8, 8, dtype=torch.uint8), train_y=None,
                     test_x=torch.zeros(5, 1, 8, 8, dtype=torch.uint8), test_y=None)
    opts = MetricOptions(inception=False, precision_recall="off")
    with pytest.raises(BenchError, match="need at least 2 samples"):
        image_evaluator(data, options=opts, resources=MetricResources(), num_samples=1, data_cfg=DataConfig(),
                        device=torch.device("cpu"))
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    with pytest.raises(BenchError, match="cannot write to"):
        image_evaluator(data, options=opts, resources=MetricResources(cache_dir=str(blocked / "cache")),
                        num_samples=10, data_cfg=DataConfig(), device=torch.device("cpu"))


# --- bench report on untrusted folders ---------------------------------------------------------------

def _drop(cols):
    def f(d):
        df = pd.read_csv(d / "results.csv")
        df.drop(columns=[c for c in cols if c in df]).to_csv(d / "results.csv", index=False)
    return f


def _set_col(col, value):
    def f(d):
        df = pd.read_csv(d / "results.csv")
        df[col] = value
        df.to_csv(d / "results.csv", index=False)
    return f


def _spec(text):
    return lambda d: (d / "spec.json").write_text(text)


def _spec_key(key, value):
    def f(d):
        s = json.loads((d / "spec.json").read_text())
        s[key] = value
        (d / "spec.json").write_text(json.dumps(s))
    return f


def _all_nan(d):
    df = pd.read_csv(d / "results.csv")
    for c in df.columns:
        if c not in ("sampler", "label"):
            df[c] = np.nan
    df.to_csv(d / "results.csv", index=False)


REPORT_CASES = [
    ("no label column", _drop(["label"]), "lacks the column(s) label"),
    ("no speed columns", _drop(["sample_ms_per_100", "nfe_measured", "sampler_efficiency"]), None),
    ("all metrics NaN", _set_col("swd", np.nan), None),
    ("every column NaN", _all_nan, None),
    ("text in a number column", _set_col("sample_ms_per_100", "fast"), "holds a non-number ('fast')"),
    ("no rows", lambda d: pd.read_csv(d / "results.csv").iloc[0:0].to_csv(d / "results.csv", index=False), None),
    ("garbage csv", lambda d: (d / "results.csv").write_bytes(b'\x00\xff a,b\n"open'), "results.csv is corrupt"),
    ("spec is a list", _spec("[1, 2]"), "holds a list, not a spec"),
    ("spec is empty", _spec("{}"), "lacks 'name'"),
    ("spec field types", _spec_key("grid", "x"), "grid must be an object"),
    ("spec notes type", _spec_key("notes", 5), "notes must be a list"),
    ("spec not json", _spec("{nope"), "spec.json is corrupt"),
    ("absolute report_dir", _spec_key("report_dir", "/tmp/elsewhere"), "pass --out"),
    ("escaping report_dir", _spec_key("report_dir", "../../../../../../x"), "pass --out"),
    ("corrupt sample file", lambda d: next((d / "samples").glob("ddim-*.npz")).write_bytes(b"junk"),
     "is not a readable sample file"),
    ("a .npy as a sample file", lambda d: np.save(next((d / "samples").glob("ddim-*.npz")), np.zeros(3)) or
     shutil.move(str(next((d / "samples").glob("ddim-*.npz.npy"))), str(next((d / "samples").glob("ddim-*.npz")))),
     "is not a readable sample file"),
]


@pytest.mark.parametrize("what,mutate,message", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_bench_report_treats_a_results_folder_as_untrusted(what, mutate, message, tmp_path):
    d = tmp_path / "work" / "results" / "toy"
    shutil.copytree(REPO / "results" / "toy", d)
    s = json.loads((d / "spec.json").read_text())
    s["report_dir"] = "."
    (d / "spec.json").write_text(json.dumps(s))
    mutate(d)
    before = files_under(tmp_path)
    result = invoke(["report", str(d)], tmp_path)
    _outcome(result)
    if message is None:
        assert result.exit_code == 0, result.output
        assert (d / "report.md").exists()
    else:
        assert message in result.output
        assert files_under(tmp_path) == before, "a refused report writes nothing"
    assert not list(d.glob(".report-*")), "no temporary folder is left behind"


# --- property-based: suite files, --set values, sample files -------------------------------------------

SUITE_KEYS = ["description", "dataset", "preset", "methods", "models", "steps", "nfe", "num_samples", "seed",
              "seeds", "bootstrap", "sample_batch", "bpd_images", "notes", "variants", "sampler", "metrics",
              "timing", "stepz"]
SCALARS = (st.integers(-2, 6) | st.integers(-2**40, 2**40) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
           | st.text(max_size=8) | st.sampled_from(["ddim", "oracle", "gaussians25", "toy", "ddpm"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["ddim", "eta", "steps", "batch", "repeats", "x"]), inner,
                                        max_size=3), max_leaves=6) | st.lists(st.integers(-1, 3), max_size=3)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"


@pytest.fixture
def no_work(monkeypatch):
    """A valid grid stops right after validation (exit 0): the property is about checking, not running."""
    import bench.api

    def stop(*args, **kwargs):
        raise SystemExit(0)

    monkeypatch.setattr(bench.api, "compare_spec", stop)


BASE_SUITE = {"methods": ["ddim"], "dataset": "gaussians25", "num_samples": 10}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=80)
@given(st.booleans(), st.dictionaries(st.sampled_from(SUITE_KEYS), VALUES, max_size=4))
@example(True, {"seeds": [1, 1]})
@example(True, {"steps": {"ddim": [0]}, "bootstrap": -1})
@example(True, {"num_samples": float("nan"), "timing": {"repeats": 0}})
@example(True, {"sampler": {"ddim": {"eta": float("inf")}}})
def test_generated_suite_files_are_valid_or_one_line_errors(no_work, tmp_path_factory, on_base, suite):
    """Generated keys and values, alone or over a valid base suite (so that deeper checks are reached)."""
    work = tmp_path_factory.mktemp("suite")
    suite = {**BASE_SUITE, **suite} if on_base else suite
    text = "".join(f"{k} = {_toml_value(v)}\n" for k, v in suite.items())
    (work / "suite.toml").write_text(text)
    result = invoke(["compare", "--suite", str(work / "suite.toml"), "--model", "oracle", "--out",
                     str(work / "out")], work)
    _outcome(result)
    if result.exit_code != 0:
        assert files_under(work) == [work / "suite.toml"]


SET_KEYS = ["train.steps", "train.seed", "train.batch_size", "train.ema_decay", "train.lr_schedule",
            "model.lr", "model.T", "model.net.hidden", "model.net.kind", "model.beta_schedule", "data.num_train",
            "data.seed", "model.bogus", "nosuch"]
SET_VALUES = (st.integers(-2**70, 2**70).map(str) | st.floats(allow_nan=True, allow_infinity=True).map(repr)
              | st.text(max_size=10) | st.sampled_from(["", "nan", "1e400", "[1, 2]", "cosine", "true", "1_000"]))


@pytest.fixture
def no_training(monkeypatch):
    """Stops a valid configuration where training would first write (exit 0)."""
    import bench.runs.train

    def stop(*args, **kwargs):
        raise SystemExit(0)

    monkeypatch.setattr(bench.runs.train, "prepare_run_dir", stop)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(SET_KEYS), SET_VALUES), min_size=1, max_size=3))
def test_generated_set_values_are_valid_or_one_line_errors(no_training, tmp_path_factory, sets):
    work = tmp_path_factory.mktemp("set")
    args = ["train", "ddpm"]
    for key, value in sets:
        args += ["--set", f"{key}={value}"]
    result = invoke(args, work)
    _outcome(result)
    assert result.exit_code == 0 or files_under(work) == []


ARRAYS = st.tuples(
    st.sampled_from(["samples", "x", "arr_0"]),
    st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.bool_, np.complex64]),
    st.lists(st.integers(0, 5), min_size=0, max_size=4),
    st.sampled_from([0.0, np.nan, np.inf, 1e30, -3.0]),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ARRAYS)
def test_generated_sample_files_are_scored_or_one_line_errors(tmp_path_factory, spec):
    name, dtype, shape, fill = spec
    work = tmp_path_factory.mktemp("samples")
    with np.errstate(all="ignore"):
        a = np.full(shape, fill).astype(dtype)
    np.savez(work / "s.npz", **{name: a})
    result = invoke(["evaluate", str(work / "s.npz"), "--dataset", "gaussians25", "--out", str(work / "o")], work)
    _outcome(result)
    if result.exit_code != 0:
        assert files_under(work) == [work / "s.npz"]
