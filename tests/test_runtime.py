"""Sampling options of the networks (bench/measure/runtime.py): bf16 autocast and torch.compile, recorded in rows;
and the GPU timing script on CPU at small sizes."""

from __future__ import annotations

import pandas as pd
import torch

import methods
from bench.measure import runtime
from bench.measure.sampling import draw_samples
from tests.conftest import invoke, native_sampler, one_error_line, tiny_model_config


def tiny_ddpm():
    torch.manual_seed(0)
    return methods.get_model("ddpm")(tiny_model_config("ddpm"), (2,)).eval()


def samples(model, **runtime_opts):
    runtime.prepare(model.denoisers(), **runtime_opts)
    sampler = native_sampler(model, 10, sampler="ddim")
    x, nfe, _ = draw_samples(sampler, model, n=64, seed=0, batch=32, device=torch.device("cpu"))
    return x, nfe


def test_bf16_runs_the_networks_in_bf16_and_keeps_the_solver_in_fp32():
    fp32, nfe32 = samples(tiny_ddpm())
    model = tiny_ddpm()
    seen = []
    model.net.register_forward_hook(lambda m, a, out: seen.append(out.dtype))
    bf16, nfe16 = samples(model, precision="bf16")
    assert nfe16 == nfe32 == 10 and bf16.dtype == torch.float32 and set(seen) == {torch.float32}  # cast back
    inner = []
    first = next(m for m in model.net.modules() if isinstance(m, torch.nn.Linear))  # a layer inside runs in bf16
    first.register_forward_hook(lambda m, a, out: inner.append(out.dtype))
    samples(model)  # prepare with fp32 adds nothing: the bf16 forward is still in place
    assert torch.bfloat16 in inner
    assert not torch.equal(bf16, fp32) and torch.allclose(bf16, fp32, atol=0.2)  # bf16 moves the last digits only


def test_compile_keeps_the_samples_and_the_nfe_count():
    fp32, nfe = samples(tiny_ddpm())
    compiled, nfe_c = samples(tiny_ddpm(), compile_=True)
    assert nfe_c == nfe == 10
    assert torch.allclose(compiled, fp32, atol=1e-5)


def test_runtime_options_are_recorded_in_rows_and_change_the_grid(tiny_suite, tmp_path):
    out = tmp_path / "bf16"
    result = invoke(["compare", "--suite", str(tiny_suite), "--methods", "ddim", "--steps", "4", "--out", str(out),
                     "--no-progress", "--precision", "bf16"], tmp_path)
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "results.csv")
    rows = rows[rows["sampler"] != "data"]
    assert list(rows["network_precision"]) == ["bf16"] and list(rows["network_compile"]) == [False]
    assert "networks while sampling: bf16" in (out / "report.md").read_text()
    plain = invoke(["compare", "--suite", str(tiny_suite), "--methods", "ddim", "--steps", "4", "--out", str(out),
                    "--no-progress"], tmp_path)  # another grid: never mixed into the bf16 folder
    assert "holds results of a different grid" in one_error_line(plain)
    assert "precision must be one of fp32, bf16, got 'fp16'" in one_error_line(
        invoke(["compare", "--suite", str(tiny_suite), "--precision", "fp16"], tmp_path))
    bad = tmp_path / "bad.toml"
    bad.write_text("compile = \"yes\"\n" + tiny_suite.read_text())
    assert "compile must be true or false, got 'yes'" in one_error_line(invoke(["compare", "--suite", str(bad)],
                                                                               tmp_path))


def test_the_gpu_timing_script_writes_rows_at_small_sizes_on_cpu(tmp_path):
    import typer
    from typer.testing import CliRunner

    from bench.benchmarks import gpu_timing

    app = typer.Typer()
    app.command()(gpu_timing.main)
    result = CliRunner().invoke(app, ["--small", "--device", "cpu", "--out", str(tmp_path / "t"), "--compile-modes",
                                      "off", "--warmup", "1", "--repeats", "2"])
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "t" / "results.csv")
    assert list(df["label"]) == [l for l in ["ddgan-T2", "ddpm-20", "ddim-10", "dpmpp-2m-5"] for _ in range(2)]
    assert list(df["network_precision"]) == ["fp32", "bf16"] * 4 and not df["network_compile"].any()
    assert list(df["nfe_declared"]) == [2, 2, 20, 20, 10, 10, 5, 5]
    assert (df["sample_s_per_100"] > 0).all() and df["small"].all() and df["paper_v100_s_per_100"].isna().all()
    assert "| ddim-10 | bf16 | off | 10 |" in (tmp_path / "t" / "timing.md").read_text()
    # the full-size cases carry the papers' V100 figures
    assert {c.label: c.paper_v100_s_per_100 for c in gpu_timing.CASES} == {
        "ddgan-T4": 0.21, "ddpm-1000": 80.5, "ddim-50": 4.01, "dpmpp-2m-10": None}
    bad = CliRunner().invoke(app, ["--small", "--device", "cpu", "--out", str(tmp_path / "u"), "--cases", "nope"])
    assert bad.exit_code == 2 and "unknown configuration 'nope'" in bad.output and not (tmp_path / "u").exists()
