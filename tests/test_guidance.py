"""Class conditioning and classifier-free guidance: label dropout, the guidance formula against the
exact guided score, NFE = 2 per guided step, conditional metrics, unchanged unconditional runs, and
bad input."""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

import methods
from bench.config.run import DataConfig, resolve_run_config
from bench.config.requests import CompareRequest
from bench.config.resolve import resolve_compare_spec
from bench.data.load import load_dataset
from bench.errors import BenchError
from bench.measure.sampling import draw_samples
from bench.measure.timing import count_calls
from bench.metrics.evaluate import evaluate, floor_samples
from bench.runs.folders import build_sampler
from methods.guidance import Guidance, drop_labels
from methods.oracle import Oracle, OracleConfig
from tests.conftest import invoke, one_error_line

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]
THREE = torch.tensor([[-1.0, 0.0], [0.0, 0.0], [1.0, 0.0]])  # overlapping classes, std 0.5: guidance matters


def oracle(means=THREE, std=0.5):
    return Oracle(OracleConfig(num_classes=len(means)), (2,), means=means, std=std)


def test_label_dropout_replaces_labels_by_the_null_token_at_rate_p_uncond():
    y = torch.randint(0, 10, (200_000,))
    out = drop_labels(y, p_uncond=0.1, num_classes=10)
    dropped = out == 10
    assert abs(dropped.double().mean().item() - 0.1) < 0.004
    assert torch.equal(out[~dropped], y[~dropped])


def test_a_conditional_ddpm_trains_on_its_labels_with_dropout(monkeypatch):
    cfg = methods.get_model("ddpm").Config(num_classes=25, p_uncond=0.2)
    model = methods.get_model("ddpm")(cfg, (2,))
    seen = []
    forward = model.net.forward
    monkeypatch.setattr(model.net, "forward", lambda x, t, y=None: seen.append(y) or forward(x, t, y))
    y = torch.randint(0, 25, (50_000,))
    model(torch.randn(50_000, 2), phase="model", step=0, y=y)
    (c,) = seen
    assert abs((c == 25).double().mean().item() - 0.2) < 0.01
    assert torch.equal(c[c != 25], y[c != 25])


def _log_density(x, means, std, abar, c=None):
    """log p_t(x | c) (c given) or log p_t(x) of the noised mixture, up to a constant shared by both."""
    a, v = abar.sqrt(), abar * std**2 + 1 - abar
    logk = -((x[:, None, :] - a * means[None]) ** 2).sum(-1) / (2 * v)
    return logk[torch.arange(len(x)), c] if c is not None else torch.logsumexp(logk, 1) - math.log(len(means))


@pytest.mark.parametrize("w", [0.0, 0.5, 2.0])
def test_guided_eps_is_the_score_of_the_tilted_noised_density(w):
    """(1 + w) eps*(x, c) - w eps*(x) = -sqrt(1 - abar) grad log p_t(x | c)^(1 + w) p_t(x)^(-w), by autograd."""
    m = oracle()
    sampler = build_sampler("ddim", m, 10, None, guidance=Guidance(w))
    means = THREE.double()
    for t in (10, 300, 900):
        x = (torch.randn(64, 2, dtype=torch.float64) * 1.5).requires_grad_(True)
        c = torch.randint(0, 3, (64,))
        abar = m.schedule.alpha_bar(torch.tensor([float(t)]))[0]
        log_tilted = (1 + w) * _log_density(x, means, 0.5, abar, c) - w * _log_density(x, means, 0.5, abar)
        (grad,) = torch.autograd.grad(log_tilted.sum(), x)
        m.label_slot.labels, m.label_slot.guidance = c, sampler.guidance
        eps = m.prediction().fn(x.detach(), torch.tensor(t))
        m.label_slot.labels = m.label_slot.guidance = None
        torch.testing.assert_close(eps, -(1 - abar).sqrt() * grad, rtol=1e-9, atol=1e-9)


def test_the_guided_oracle_samples_p_x_given_c_at_w_0_and_sharpens_beyond_the_tilted_density_above():
    """At w = 0 the exact conditional score samples p(x | c). At w > 0 guidance is not a sampler of the tilted
    density p(x | c) p(c | x)^w: the noised guided scores are not the scores of the noised tilted density, and
    (measured here, on three overlapping Gaussians, class 2) the samples land further from the other classes
    than the tilted density does, with a smaller spread. `pytest -s` prints the numbers docs/DESIGN.md cites."""
    g = torch.linspace(-4, 4, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    logk = -((grid[:, None] - THREE.double()[None]) ** 2).sum(-1) / (2 * 0.25)
    m = oracle()
    for w in (0.0, 1.0, 3.0):
        tilted = torch.softmax((1 + w) * logk[:, 2] - w * (torch.logsumexp(logk, 1)), 0)
        mean = float((tilted * grid[:, 0]).sum())
        std = float((tilted * (grid[:, 0] - mean) ** 2).sum().sqrt())
        for name, steps in (("ddpm", 1000), ("ddim", 200)):
            s = build_sampler(name, m, steps, None, guidance=Guidance(w))
            x, _, y = draw_samples(s, m, n=4000, seed=0, batch=4000, device=CPU, classes="2")
            got_mean, got_std = x[:, 0].mean().item(), x[:, 0].std().item()
            print(f"w={w:g} tilted mean {mean:.2f} std {std:.2f}; {name}-{steps} mean {got_mean:.2f} std {got_std:.2f}")
            assert (y == 2).all()
            if w == 0:
                assert abs(got_mean - mean) < 0.03 and abs(got_std - std) < 0.03
            else:
                assert got_mean > mean + 0.1 and got_std < std


def test_a_guided_step_costs_two_network_evaluations_per_sample():
    m = oracle()
    for text, per_step in (("0", 1), ("1.5", 2), ("uncond", 1)):
        s = build_sampler("ddim", m, 10, None, guidance=Guidance.parse(text))
        x, nfe, _ = draw_samples(s, m, n=300, seed=0, batch=100, device=CPU)
        assert s.nfe == nfe == 10 * per_step, text
    # the guided halves run as one call of 2B rows: the hooks count rows per sample, not calls
    s = build_sampler("ddim", m, 10, None, guidance=Guidance(1.0))
    with count_calls(m.denoisers(), batch=100) as counter:
        s(torch.randn(100, 2), generator=torch.Generator().manual_seed(0), labels=torch.zeros(100, dtype=torch.long))
    assert counter["calls"] == 10 and counter["evals"] == 20
    heun = build_sampler("heun", m, 5, None, guidance=Guidance(1.0))
    _, nfe, _ = draw_samples(heun, m, n=100, seed=0, batch=100, device=CPU)
    assert heun.nfe == nfe == 2 * (2 * 5 - 1)


@pytest.mark.parametrize("name", methods.samplers_for("oracle"))
def test_every_eps_sampler_samples_a_conditional_model_guided(name):
    """Guidance lives in the prediction, so every sampler of an eps model gets it, with labels it must be given."""
    m = oracle(means=torch.tensor([[-4.0, 0.0], [4.0, 0.0]]), std=0.1)
    cls = methods.get_sampler(name)
    rng = cls.valid_steps(type(m), m.cfg, cls.Options())
    steps = max(rng.lo, min(10, rng.hi))
    s = build_sampler(name, m, steps, None, guidance=Guidance(1.0))
    x, nfe, y = draw_samples(s, m, n=200, seed=0, batch=200, device=CPU, classes="1")
    assert nfe == s.nfe and (x[:, 0] > 0).double().mean() > 0.95, name
    with pytest.raises(ValueError, match="needs the labels"):
        s(torch.randn(4, 2), generator=torch.Generator())


def test_conditional_accuracy_of_real_labelled_toy_data_is_the_nearest_mean_rules_own():
    data = load_dataset(DataConfig(name="gaussians25"))
    x, y = floor_samples(data, 5000, seed=0, labelled=True)
    own = float((torch.cdist(x.double(), data.mixture.means.double()).argmin(1) == y).double().mean())
    metrics, _ = evaluate(data, x, seed=0, labels=y)
    assert metrics["cond_accuracy"] == own and own > 0.999
    assert metrics["classes_covered"] == metrics["classes_asked"] == 25
    shuffled, _ = evaluate(data, x, seed=0, labels=y[torch.randperm(len(y))])
    assert shuffled["cond_accuracy"] < 0.1 and shuffled["classes_covered"] == 0


@pytest.mark.slow
def test_conditional_accuracy_of_real_mnist_is_near_the_classifiers_test_accuracy(shared_data, tmp_path):
    from bench.metrics import classifier as C
    from bench.metrics import domain
    from bench.metrics.conditional import conditional_metrics

    data = load_dataset(DataConfig(name="mnist", root=str(shared_data)))
    clf = C.load_or_train("mnist", data, cache_dir=tmp_path, device=CPU, log=print)
    log_probs, _ = domain.classify(clf, data.test_x[:5000])
    acc = conditional_metrics(log_probs.argmax(1), data.test_y[:5000])["cond_accuracy"]
    assert abs(acc - clf.info["test_accuracy"]) < 0.01


@pytest.mark.parametrize("folder", ["toy", "toy-ddgan", "toy-vdm", "toy-solvers", "toy-flow", "toy-cm", "mnist-cpu",
                                    "mnist-cm-cpu"])
def test_unconditional_runs_keep_the_run_ids_of_the_committed_results(folder):
    """Class options are left out of an unconditional run's id, so every committed checkpoint id still resolves."""
    spec = json.loads((REPO / "results" / folder / "spec.json").read_text())
    grid = resolve_compare_spec(CompareRequest(suite=spec["suite"]))
    assert {c["run_id"] for c in spec["cells"]} == {grid.run_config(c).run_id() for c in grid.cells}


def test_conditional_runs_have_their_own_ids():
    cls = methods.get_model("ddpm")
    plain = resolve_run_config("ddpm", model_cls=cls.Config, preset="toy", dataset="gaussians25", sets={})
    cond = resolve_run_config("ddpm", model_cls=cls.Config, preset="toy", dataset="gaussians25",
                              sets={"model.num_classes": 25})
    other = resolve_run_config("ddpm", model_cls=cls.Config, preset="toy", dataset="gaussians25",
                               sets={"model.num_classes": 25, "model.p_uncond": 0.2})
    assert len({plain.run_id(), cond.run_id(), other.run_id()}) == 3
    assert "model.num_classes" not in plain.semantic_dict()


@pytest.fixture
def guided_suite(tmp_path, tiny_preset) -> Path:
    path = tmp_path / "guided.toml"
    path.write_text(textwrap.dedent(f"""
        description = "tests: a guided grid"
        dataset = "gaussians25"
        preset = "{tiny_preset}"
        guidance = [0, 1, "uncond"]
        num_samples = 200
        sample_batch = 100
        [variants.ddim-cfg]
        method = "ddim"
        set = {{ "model.num_classes" = 25 }}
        steps = [4]
        [variants.exact]
        method = "ddim"
        model = "oracle"
        set = {{ "model.num_classes" = 25 }}
        steps = [4]
        [timing]
        batch = 20
        warmup = 1
        repeats = 2
        max_seconds = 1
    """))
    return path


def test_a_guided_comparison_writes_guidance_rows_accuracy_and_the_guidance_figure(guided_suite, tmp_path):
    from bench.measure.compare import compare
    from bench.report.render import render_report

    spec = resolve_compare_spec(CompareRequest(suite=str(guided_suite)))
    out = tmp_path / "out"
    df = compare(spec, runs_dir=tmp_path / "runs", results_dir=out, report_dir=out, progress=False,
                 log=lambda s: None)
    rows = df[df["sampler"] != "data"].set_index("label")
    assert sorted(rows.index) == sorted(f"{v}-4-{g}" for v in ("ddim-cfg", "ddim") for g in ("w0", "w1", "uncond")
                                        ) or len(rows) == 6
    exact = rows[rows["model"] == "oracle"]
    assert list(exact.sort_values("nfe_measured")["nfe_measured"]) == [4, 4, 8]
    assert exact[exact["guidance"].astype(str) == "0"]["cond_accuracy"].iloc[0] > 0.99  # the exact conditional score
    assert exact[exact["guidance"].astype(str) == "uncond"]["cond_accuracy"].isna().all()
    assert set(pd.to_numeric(rows["guidance_scale"]).dropna()) == {1.0, 2.0}
    floor = df[df["sampler"] == "data"].iloc[0]
    assert floor["cond_accuracy"] > 0.99  # real data with its true classes
    report = render_report(out, out).read_text()
    assert "guidance.png" in report and (out / "guidance.png").exists()
    assert "w 0 → 1" in report
    again = compare(spec, runs_dir=tmp_path / "runs", results_dir=out, report_dir=out, progress=False,
                    log=lambda s: None)
    assert len(again) == len(df)  # every guided row is its own identity: nothing re-measured, nothing lost


def cli(args, cwd):
    return one_error_line(invoke(args, cwd))


def test_a_conditional_model_on_unlabelled_data_or_with_the_wrong_classes_is_a_one_line_error(tmp_path):
    for args, message in (
        (["--dataset", "swissroll", "--set", "model.num_classes=3"], "swissroll has no class labels"),
        (["--dataset", "gaussians25", "--set", "model.num_classes=10"], "set model.num_classes=25"),
    ):
        line = cli(["train", "ddpm", *args, "--set", "train.steps=2"], tmp_path)
        assert message in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.safetensors"))


def test_bad_guidance_and_classes_are_one_line_errors(guided_suite, tiny_suite, tmp_path):
    with pytest.raises(BenchError, match="needs a class-conditional model"):
        resolve_compare_spec(CompareRequest(suite=str(tiny_suite), guidance=["1"]))
    with pytest.raises(BenchError, match="guidance w must be finite and >= 0"):
        resolve_compare_spec(CompareRequest(suite=str(guided_suite), guidance=["-1"]))
    with pytest.raises(BenchError, match="must be a number w >= 0 or 'uncond'"):
        resolve_compare_spec(CompareRequest(suite=str(guided_suite), guidance=["strong"]))
    with pytest.raises(BenchError, match="one class in 0..24"):
        resolve_compare_spec(CompareRequest(suite=str(guided_suite), classes="25"))
    line = cli(["compare", "--suite", str(guided_suite), "--guidance", "0,0", "--out", str(tmp_path / "o")], tmp_path)
    assert "guidance repeats 0" in line
    bad = tmp_path / "bad.toml"
    bad.write_text(guided_suite.read_text().replace('guidance = [0, 1, "uncond"]', 'guidance = ["high"]'))
    assert "guidance must be a list" in cli(["compare", "--suite", str(bad), "--out", str(tmp_path / "o2")], tmp_path)


def test_a_fixed_class_is_asked_of_every_sample():
    m = oracle(means=torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]]), std=0.1)
    s = build_sampler("ddim", m, 20, None, guidance=Guidance(0.0))
    x, _, y = draw_samples(s, m, n=300, seed=0, batch=100, device=CPU, classes="2")
    assert (y == 2).all() and (x[:, 1] > 3).all()
    a, _, ya = draw_samples(s, m, n=300, seed=0, batch=100, device=CPU)
    b, _, yb = draw_samples(s, m, n=300, seed=0, batch=100, device=CPU)
    assert torch.equal(ya, yb) and torch.equal(a, b) and len(ya.unique()) == 3  # uniform, from the seed


@pytest.mark.parametrize("name", ["ddpm", "vdm"])
def test_conditional_models_train_and_sample_guided_with_their_own_and_every_eps_sampler(name):
    cls = methods.get_model(name)
    model = cls(cls.Config(num_classes=3), (2,))
    model(torch.randn(16, 2), phase="model", step=0, y=torch.randint(0, 3, (16,)))["loss"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("net.") and "cemb" in n)
    model.eval()
    samplers = [cls.native_sampler, "ddim", "dpmpp-2m"]
    for sampler in samplers:
        steps = 1000 if sampler == "ddpm" else 5
        s = build_sampler(sampler, model, steps, None, guidance=Guidance(2.0))
        x, nfe, y = draw_samples(s, model, n=40, seed=0, batch=20, device=CPU)
        assert nfe == s.nfe == 2 * steps and torch.isfinite(x).all() and y.shape == (40,), (name, sampler)
        assert s.settings["guidance_scale"] == 3.0


def test_a_conditional_run_trains_with_its_preview_and_resumes_exactly(tiny_preset, tmp_path):
    """The harness feeds labels from the same index stream as the data, so resume stays bit-exact."""
    import shutil

    from bench.runs.train import train
    from tests.test_train_resume import weights

    cfg = resolve_run_config("ddpm", model_cls=methods.get_model("ddpm").Config, preset=str(tiny_preset),
                             sets={"model.num_classes": "25", "train.preview_samples": "8"})
    full = train(cfg, tmp_path / "full", progress=False, log=lambda s: None)
    assert (full / "preview.png").exists()
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "env.json", "stats.jsonl"):
        shutil.copy(full / name, part / name)
    shutil.copytree(full / "checkpoints" / "step-00000010", part / "checkpoints" / "step-00000010")
    train(cfg, part, resume=True, progress=False, log=lambda s: None)
    for a, b in zip(weights(full / "checkpoints" / "step-00000030"), weights(part / "checkpoints" / "step-00000030")):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_only_eps_models_may_declare_classes():
    import dataclasses as dc

    from methods.base import Model
    from methods.registry import register_model

    @dc.dataclass(frozen=True)
    class Cfg:
        num_classes: int = 0

    class Velocity(Model):
        Config = Cfg
        kind = "velocity"

    with pytest.raises(TypeError, match="must predict eps"):
        register_model("test-conditional-velocity")(Velocity)


def test_a_folder_dataset_takes_its_classes_from_its_sub_folders(tmp_path):
    import numpy as np
    from PIL import Image

    for i in range(20):
        folder = tmp_path / "classes" / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(folder / f"{i:02d}.png")
        (tmp_path / "flat").mkdir(exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(tmp_path / "flat" / f"{i:02d}.png")
    data = load_dataset(DataConfig(name=f"folder:{tmp_path / 'classes'}", resolution=8))
    assert data.num_classes == 2 and set(data.labels(torch.arange(len(data))).tolist()) == {0, 1}
    assert load_dataset(DataConfig(name=f"folder:{tmp_path / 'flat'}", resolution=8)).num_classes is None


# --- class-conditional DDGAN: conditional generator and projection discriminator, never guided ------

@pytest.mark.parametrize("shape", [(2,), (1, 16, 16)])
def test_a_conditional_ddgan_trains_both_networks_on_the_class_and_samples_it_without_guidance(shape):
    import dataclasses as dc

    from tests.conftest import tiny_model_config

    torch.manual_seed(0)
    cls = methods.get_model("ddgan")
    model = cls(dc.replace(tiny_model_config("ddgan", shape), num_classes=3), shape)
    x0, y = torch.randn(8, *shape), torch.randint(0, 3, (8,))
    for phase, net in (("disc", "disc"), ("gen", "gen")):
        model.zero_grad()
        model(x0, phase=phase, step=0, y=y)["loss"].backward()
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(net) and ("class_emb" in n or
                                                                                      "projection" in n)]
        assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), phase  # the class is used
    with pytest.raises(ValueError, match="trains on labelled batches"):
        model(x0, phase="gen", step=0)
    model.eval()
    x_next, t, z = torch.randn(4, *shape), torch.zeros(4, dtype=torch.long), torch.randn(4, model.gen.nz)
    with torch.no_grad():  # trained-like weights (a fresh generator is the identity map): classes differ
        for p in model.gen.parameters():
            p.normal_(0, 0.3)
    assert not torch.equal(model.predict(x_next, t, z, torch.zeros(4, dtype=torch.long)),
                           model.predict(x_next, t, z, torch.ones(4, dtype=torch.long)))
    s = build_sampler("ddgan", model, model.cfg.T, None)
    x, nfe, labels = draw_samples(s, model, n=12, seed=0, batch=6, device=CPU)
    assert nfe == s.nfe == model.cfg.T and labels.shape == (12,) and torch.isfinite(x).all()  # NFE = T, not 2T
    with pytest.raises(BenchError, match="conditionally without guidance"):
        build_sampler("ddgan", model, model.cfg.T, None, guidance=Guidance(1.0))
    with pytest.raises(BenchError, match="conditionally without guidance"):
        build_sampler("ddgan", model, model.cfg.T, None, guidance=Guidance(None))


def test_an_unconditional_ddgan_refuses_labels_and_keeps_its_run_id():
    from tests.conftest import tiny_model_config

    cls = methods.get_model("ddgan")
    model = cls(tiny_model_config("ddgan"), (2,))
    with pytest.raises(ValueError, match="unconditional: it takes no class labels"):
        model.gen(torch.randn(2, 2), torch.zeros(2, dtype=torch.long), torch.randn(2, model.gen.nz),
                  torch.zeros(2, dtype=torch.long))
    cfg = resolve_run_config("ddgan", model_cls=cls.Config, preset="toy")
    assert "model.num_classes" not in cfg.semantic_dict()


def test_a_grid_with_a_conditional_ddgan_gives_it_guidance_0_only_and_says_why(tiny_suite):
    raw = tiny_suite.read_text()
    suite = tiny_suite.parent / "cond.toml"
    suite.write_text(raw.replace('methods = ["ddpm", "ddim"]\n', '') + textwrap.dedent("""
        [variants.ddgan-cond]
        method = "ddgan"
        set = { "model.num_classes" = 25 }
        steps = [2]
        [variants.ddim-cond]
        method = "ddim"
        set = { "model.num_classes" = 25 }
        steps = [2]
    """))
    spec = resolve_compare_spec(CompareRequest(suite=str(suite), guidance=["0", "1"]))
    assert sorted((c.variant, c.guidance) for c in spec.cells) == [
        ("ddgan-cond", "0"), ("ddim-cond", "0"), ("ddim-cond", "1")]
    assert any("ddgan-cond on ddgan: conditional without guidance, so only guidance 0" in n for n in spec.notes)


def test_the_guidance_reading_skips_a_line_sampled_at_one_w_only():
    from bench.report.readings.guidance import guidance_reading
    from bench.results.store import read_results

    df = read_results(REPO / "results" / "toy-guidance")  # committed rows, read as the report reads them
    lines = guidance_reading(df)
    assert any(line.startswith("**ddim-cfg-10") for line in lines)
    assert not any("ddgan-cond" in line for line in lines)  # w = 0 only: nothing moves "0 -> 0"
