"""EDM, ECT and MeanFlow through the harness: exact resume, ECT's parent run, one-line errors."""

from __future__ import annotations

import pytest

import methods
from bench.config.run import resolve_run_config, run_dir_for
from bench.runs.train import train
from tests.conftest import invoke, one_error_line
from tests.test_faults import assert_same_weights


def config(name, tiny_preset, **sets):
    return resolve_run_config(name, model_cls=methods.get_model(name).Config, preset=str(tiny_preset),
                              sets={k: str(v) for k, v in sets.items()})


@pytest.mark.parametrize("name", ["edm", "ect", "meanflow"])
def test_training_stopped_at_a_checkpoint_resumes_bit_exactly(name, tiny_preset, tmp_path):
    """Each model's RNG draws (sigma, (r, t), noise), EMA and ECT's stage counter continue where they stopped."""
    cfg = config(name, tiny_preset)
    runs = tmp_path / "runs"
    full = train(cfg, run_dir_for(cfg, runs), progress=False, log=lambda s: None)
    part = tmp_path / "part" / full.name
    train(config(name, tiny_preset, **{"train.steps": 20}), part, progress=False, log=lambda s: None, runs_dir=runs)
    train(cfg, part, resume=True, progress=False, log=lambda s: None, runs_dir=runs)
    assert_same_weights(full, part)


def test_ect_trains_its_edm_parent_first_and_its_id_holds_the_parents(tiny_preset, tmp_path):
    cfg = config("ect", tiny_preset)
    lines: list[str] = []
    train(cfg, run_dir_for(cfg, tmp_path / "runs"), progress=False, log=lines.append)
    base = cfg.parent("base")
    assert base.model_name == "edm" and run_dir_for(base, tmp_path / "runs").exists()
    assert cfg.semantic_dict()["parents.base"] == base.run_id()
    assert any("ect: network initialised from the" in ln for ln in lines)


@pytest.mark.parametrize("model,sets,message", [
    ("ect", ["model.base=ddpm"], "ect starts from an edm run: model.base must be edm"),
    ("ect", ["model.mode=distill"], "ect: model.mode is tune"),
    ("ect", ["model.stages=0"], "ect: need q > 1"),
    ("meanflow", ["model.ratio=1.5"], "model.ratio (the share of r != t) must be in [0, 1]"),
    ("meanflow", ["model.t_dist=beta"], "meanflow: unknown model.t_dist 'beta'"),
    ("meanflow", ["model.weight_p=-1"], "meanflow: need logit_std > 0"),
    ("edm", ["model.sigma_data=0"], "sigma_data"),
])
def test_bad_options_are_one_line_errors_and_train_nothing(model, sets, message, tiny_preset, tmp_path):
    args = ["train", model, "--preset", str(tiny_preset), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert message in one_error_line(invoke(args, tmp_path))
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
