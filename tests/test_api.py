"""bench as a library: the request objects the CLI builds, the one sampling path of `compare` and `sample`,
and the one identity rule that keeps every committed run id and grid hash."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from bench import api
from bench.config.identity import LATER, NOT_MEASURED, identity, short_hash
from bench.config.requests import CompareRequest
from bench.config.resolve import resolve_compare_spec
from bench.errors import BenchError
from tests.conftest import invoke, request_of

ROOT = Path(__file__).resolve().parents[1]


def test_a_sample_file_holds_the_samples_of_the_compare_row(tiny_suite, tmp_path):
    """`bench compare --samplers` (the synonym of --methods) and `bench sample` of the same cell, seed and batch
    draw the same samples: both go through bench/measure/sampling.py."""
    out = tmp_path / "out"
    result = invoke(["compare", "--suite", str(tiny_suite), "--samplers", "ddim", "--steps", "5", "--out", str(out),
                     "--no-progress"], tmp_path)
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "spec.json").read_text())
    (run,) = {c["run_dir"] for c in spec["cells"]}
    kept = np.load(out / "samples" / "ddim-5.npz")["samples"]
    path = api.sample(Path(run), out=tmp_path / "s.npz", num=len(kept), sampler="ddim", steps=5, seed=spec["grid"]["seed"],
                      batch=spec["grid"]["sample_batch"], log=lambda _: None)
    drawn = np.load(path)["samples"]
    assert drawn.shape == kept.shape and np.array_equal(drawn, kept)
    other = api.sample(Path(run), out=tmp_path / "t.npz", num=len(kept), sampler="ddim", steps=5, seed=1,
                       batch=spec["grid"]["sample_batch"], log=lambda _: None)
    assert not np.array_equal(np.load(other)["samples"], kept)  # the comparison can fail


def test_compare_request_from_text_parses_each_list_once():
    req = CompareRequest.from_text(suite="toy", samplers="ddim, dpmpp-2m", nfe="4,8", grids="karras(rho=5),trailing")
    assert req.samplers == ("ddim", "dpmpp-2m") and req.nfe == (4, 8) and req.grids == ("karras(rho=5)", "trailing")
    with pytest.raises(BenchError, match="--nfe must be comma-separated integers"):
        CompareRequest.from_text(nfe="4,x")
    spec = resolve_compare_spec(req)
    assert {c.sampler for c in spec.cells} == {"ddim", "dpmpp-2m"}
    assert all(spec.run_config(c) is spec.run_config(c) for c in spec.cells)  # computed once, then looked up


def test_the_identity_rule_reads_field_metadata():
    @dataclasses.dataclass(frozen=True)
    class Example:
        a: int = 1
        later: int = dataclasses.field(default=0, metadata=LATER)
        path: str = dataclasses.field(default="", metadata=NOT_MEASURED)
        renamed: str = dataclasses.field(default="x", metadata={"id_key": "old"})
        dropout: float = dataclasses.field(default=0.1, metadata={"id": "with:later"})

    assert identity(Example()) == {"a": 1, "old": "x"}
    assert identity(Example(later=3, path="/p")) == {"a": 1, "later": 3, "old": "x", "dropout": 0.1}
    assert short_hash(identity(Example(path="/elsewhere"))) == short_hash(identity(Example()))
    assert short_hash(identity(Example(a=2))) != short_hash(identity(Example()))


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "results").iterdir() if (p / "spec.json").exists()))
def test_every_committed_grid_hash_and_run_id_stays(folder):
    """Resolved again from its suite today, each committed grid has the hash its spec.json recorded, and each
    cell the run id its checkpoint was trained under."""
    recorded = json.loads((ROOT / "results" / folder / "spec.json").read_text())
    spec = resolve_compare_spec(request_of(recorded))
    assert spec.grid_hash() == recorded["grid_hash"]
    ids = [(spec.run_config(c).run_id(), r["run_id"]) for c, r in zip(spec.cells, recorded["cells"]) if r.get("run_id")]
    assert ids and all(a == b for a, b in ids)


def test_the_report_names_the_command_that_asked_for_the_grid(tiny_suite, tmp_path):
    """A grid other than a suite's own reruns with its own flags, which spec.json records and the report prints."""
    req = CompareRequest.from_text(suite=str(tiny_suite), samplers="ddim", steps="5", bootstrap=3)
    assert req.command() == f"bench compare --suite {tiny_suite} --samplers ddim --steps 5 --bootstrap 3"
    assert resolve_compare_spec(req).command == req.command()
    assert "command" not in resolve_compare_spec(req).grid_dict()  # where a grid came from is not what it is
