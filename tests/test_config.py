"""Config resolution: layering order, strict keys, typed values."""

from __future__ import annotations

import json

import pytest

import methods
from bench.config.run import resolve_run_config
from bench.config.values import parse_sets
from bench.errors import BenchError

DDPM = methods.get_model("ddpm").Config


def resolve(**kw):
    return resolve_run_config("ddpm", model_cls=DDPM, preset=kw.pop("preset", "toy"), **kw)


def test_layers_apply_in_order(tmp_path):
    base = resolve()
    assert base.train.steps == 4000 and base.model.lr == 2e-3  # preset over defaults
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[train]\nsteps = 50\nbatch_size = 8\n")
    cfg = resolve(config_file=cfg_file, flags={"model.T": 500}, sets={"train.steps": "70"})
    assert cfg.train.steps == 70  # --set beats the config file
    assert cfg.train.batch_size == 8  # config file beats the preset
    assert cfg.model.T == 500  # flags
    assert cfg.train.lr_schedule == "cosine"  # preset survives where nothing overrides it


def test_bare_keys_resolve_when_unique_and_nested_keys_work():
    cfg = resolve(sets={"batch_size": "32", "model.net.hidden": "64", "model.net.channels": "32,64"})
    assert cfg.train.batch_size == 32 and cfg.model.net.hidden == 64 and cfg.model.net.channels == (32, 64)


@pytest.mark.parametrize("sets,message", [
    ({"nope": "1"}, "unknown config key 'nope'; valid keys: model.T"),
    ({"train.steps": "abc"}, "train.steps='abc' is not a valid int"),
    ({"data.hflip": "maybe"}, "is not a valid bool"),
    ({"seed": "1"}, "ambiguous"),
    ({"train.steps": "1.5"}, "not a valid int"),
])
def test_bad_keys_and_values_are_clear_errors(sets, message):
    with pytest.raises(BenchError, match=message):
        resolve(sets=sets)


def test_malformed_set_items():
    with pytest.raises(BenchError, match="malformed"):
        parse_sets(["train.steps"])
    assert parse_sets(["a.b = 3"]) == {"a.b": "3"}


def test_unknown_preset_and_bad_config_file(tmp_path):
    with pytest.raises(BenchError, match="unknown preset 'nope'; choose from: celeba64, celebahq256, cifar10"):
        resolve(preset="nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps=")
    with pytest.raises(BenchError, match="not valid TOML"):
        resolve(config_file=bad)


def test_run_id_ignores_cadence_and_changes_with_semantics():
    a = resolve()
    assert a.run_id() == resolve(sets={"train.log_every": "7", "data.root": "/x"}).run_id()
    assert a.run_id() != resolve(sets={"train.steps": "10"}).run_id()
    json.dumps(a.to_dict())  # serialisable


def test_a_variant_named_in_methods_is_one_cell_not_two(tmp_path):
    from bench.config.requests import CompareRequest
    from bench.config.resolve import resolve_compare_spec

    suite = tmp_path / "grid.toml"
    suite.write_text('dataset = "gaussians25"\nmethods = ["ddpm", "fast", "ddpm"]\n[steps]\nddpm = [1000]\n'
                     '[variants.fast]\nmethod = "ddim"\nsteps = [2]\n')
    spec = resolve_compare_spec(CompareRequest(suite=str(suite)))
    assert [(c.sampler, c.variant, c.steps) for c in spec.cells] == [("ddpm", "", 1000), ("ddim", "fast", 2)]


def test_a_variant_that_sets_a_list_option_gives_hashable_cells_and_the_listed_config(tmp_path):
    from bench.config.requests import CompareRequest
    from bench.config.resolve import resolve_compare_spec

    suite = tmp_path / "grid.toml"
    suite.write_text('dataset = "gaussians25"\nmethods = ["ff"]\n[variants.ff]\nmethod = "flow"\nsteps = [4]\n'
                     'set = { "model.net.fourier_freqs" = [1, 2] }\n')
    spec = resolve_compare_spec(CompareRequest(suite=str(suite)))
    (cell,) = spec.cells
    assert {cell: 1}[cell] == 1  # a list value used to make the cell unhashable (TypeError in compare)
    assert spec.run_config(cell).model.net.fourier_freqs == (1.0, 2.0)
