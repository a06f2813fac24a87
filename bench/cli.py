"""The `bench` command line. Each command resolves its options and calls one library function;
bad input ends with a one-line `error: ...` and exit code 2, before anything is written."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from bench.errors import BenchError


def _click_exceptions(name: str) -> tuple[type, ...]:
    """Exception class `name` from click and from the copy of click that typer >= 0.2x ships as
    `typer._click` (its parser raises those, not click's)."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            cls = getattr(__import__(module, fromlist=[name]), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


EXIT = _click_exceptions("Exit") + (typer.Exit,)
ABORT = _click_exceptions("Abort") + (typer.Abort,)
USAGE = _click_exceptions("UsageError")
CLICK = _click_exceptions("ClickException")
NO_ARGS = _click_exceptions("NoArgsIsHelpError")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Train, sample and measure fast diffusion samplers on one harness.")

RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", envvar="BENCH_RUNS_DIR", help="Where training runs live.")
DATA_DIR = typer.Option("", "--data-dir", envvar="BENCH_DATA_DIR", help="Folder with image datasets.")
PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: when on a terminal).")
DEVICE = typer.Option("auto", help="auto, cpu or cuda.")
FID_WEIGHTS = typer.Option("", "--fid-weights", envvar="BENCH_FID_WEIGHTS",
                           help="FID Inception weights (torch-fidelity layout); default: torch-fidelity's own copy.")
VGG16_WEIGHTS = typer.Option("", "--vgg16-weights", envvar="BENCH_VGG16_WEIGHTS",
                             help="VGG16 weights (torchvision state dict) for precision/recall; default: torchvision's")
CACHE_DIR = typer.Option(Path("~/.cache/bench"), "--cache-dir", envvar="BENCH_CACHE_DIR",
                         help="Reference features and the domain classifier are cached here.")
LATENT = typer.Option(None, "--latent", help="Train and sample in an autoencoder's latent space: 'autoencoder' (the "
                      "preset's, trained first when missing) or an autoencoder run folder (sets data.latent).")
OFFLINE = typer.Option(False, "--offline", envvar="BENCH_OFFLINE",
                       help="Never download metric weights: without local files those metrics stay empty, with a note.")


@contextlib.contextmanager
def user_errors():
    """BenchError -> one line on stderr, exit 2; Ctrl-C -> exit 130."""
    try:
        yield
    except BenchError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def _api():
    """bench.api, imported when a command runs rather than when the CLI loads: it pulls in torch and diffusers
    (about 7 s), which `bench --help` and a usage error should not wait for. The one import inside a function
    in bench/ (tests/test_architecture.py)."""
    import bench.api

    return bench.api


def _progress(flag: Optional[bool]) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@app.command()
def train(
    model: str = typer.Argument(..., help="Model to train (see `bench list`)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the preset's, gaussians25 for toy)."),
    preset: Optional[str] = typer.Option(None, help="Training preset (default: the dataset's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML with [model]/[data]/[train], or a config.json."),
    T: Optional[int] = typer.Option(None, "--T", help="Number of diffusion steps T (models with a discrete T)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set train.steps=1000."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: RUNS_DIR/<id>-<model>-<dataset>...)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    log_with: Optional[str] = typer.Option(None, "--log-with", help="Also log to an Accelerate tracker: tensorboard"
                                                                   " (event files in RUN/logs; off by default)."),
    latent: Optional[str] = LATENT,
    runs_dir: Path = RUNS_DIR,
    data_dir: str = DATA_DIR,
    progress: Optional[bool] = PROGRESS,
):
    """Train one model; checkpoints, stats.jsonl and preview.png go into its run folder."""
    api = _api()
    with user_errors():
        req = api.TrainRequest(model=model, dataset=dataset, preset=preset, config=config, T=T, sets=tuple(set_ or ()),
                               out=out, resume=resume, log_with=log_with, latent=latent, runs_dir=runs_dir,
                               data_root=data_dir, progress=_progress(progress))
        typer.echo(f"run: {api.train(req, log=typer.echo)}")


@app.command()
def compare(
    suite: Optional[str] = typer.Option(None, help="Benchmark suite (default: toy, or the dataset's suite)."),
    samplers: Optional[str] = typer.Option(None, "--samplers", "--methods",
                                           help="Comma-separated samplers or suite variants (see `bench list`);"
                                                " --methods is the same option."),
    model: Optional[str] = typer.Option(None, "--model",
                                        help="Comma-separated models every sampler runs on: registry names (e.g. "
                                             "oracle) or run folders, such as one `bench import` wrote (default: "
                                             "the suite's, else each sampler's own)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the suite's)."),
    steps: Optional[str] = typer.Option(None, help="Comma-separated step counts; each sampler keeps those it supports."),
    nfe: Optional[str] = typer.Option(None, "--nfe", help="Comma-separated NFE budgets: each sampler takes the most "
                                                          "steps whose network calls fit (Heun: 2N-1 for N steps)."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Samples per cell."),
    seed: Optional[int] = typer.Option(None, help="Sampling seed (of a grid without a seeds axis)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated training seeds, e.g. 0,1,2: each cell "
                                                              "is trained and sampled once per seed (mean ± 95% interval)."),
    bootstrap: Optional[int] = typer.Option(None, "--bootstrap", help="Resamples for a bootstrap interval over "
                                                                      "samples within each row (0: none)."),
    guidance: Optional[str] = typer.Option(None, "--guidance", help="Class-conditional models: comma-separated "
                                           "guidance w, e.g. 0,0.5,1,uncond (diffusers' guidance_scale = 1 + w)."),
    classes: Optional[str] = typer.Option(None, "--classes", help="Class-conditional models: 'uniform' (seeded per"
                                                                  " block, the default) or one class index."),
    precision: Optional[str] = typer.Option(None, "--precision", help="Networks while sampling: fp32 (default) or"
                                                                      " bf16 (autocast; solver arithmetic stays fp32)."),
    compile_: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the networks while"
                                                                                 " sampling (recorded in every row)."),
    latent: Optional[str] = LATENT,
    grid: Optional[str] = typer.Option(None, "--grid", help="Comma-separated time grids, an axis like --nfe:"
                                       " karras, logsnr, time-uniform (sigma grids; parameters as"
                                       " 'karras(rho=5,sigma_min=0.002,final=none)') or trailing, leading, linspace"
                                       " (diffusers' timestep spacings)."),
    out: Optional[Path] = typer.Option(None, help="Write results.csv, spec.json and report.md here."),
    device: str = DEVICE,
    runs_dir: Path = RUNS_DIR,
    data_dir: str = DATA_DIR,
    fid_weights: str = FID_WEIGHTS,
    vgg16_weights: str = VGG16_WEIGHTS,
    cache_dir: Path = CACHE_DIR,
    offline: bool = OFFLINE,
    progress: Optional[bool] = PROGRESS,
):
    """Train missing checkpoints, sample every (sampler, model, steps) cell, measure, and write a report."""
    api = _api()
    with user_errors():
        req = api.CompareRequest.from_text(
            suite=suite, samplers=samplers, models=model, dataset=dataset, steps=steps, nfe=nfe, num_samples=num_samples,
            seed=seed, seeds=seeds, bootstrap=bootstrap, guidance=guidance, classes=classes, precision=precision,
            compile=compile_, latent=latent, grids=grid, data_root=data_dir, out=out, runs_dir=runs_dir,
            device=device, progress=_progress(progress), fid_weights=fid_weights, vgg16_weights=vgg16_weights,
            cache_dir=str(cache_dir) if cache_dir else "", offline=offline)
        results_dir, report = api.compare(req, log=typer.echo)
        if api.Shard.current().main:  # under `accelerate launch`, one process speaks for the launch
            typer.echo(f"results: {results_dir / 'results.csv'}\nreport: {report}")


@app.command()
def sample(
    run: Path = typer.Argument(..., help="A training run folder (see `bench train`)."),
    steps: Optional[int] = typer.Option(None, help="Sampler steps (default: the sampler's default)."),
    num: int = typer.Option(..., "--num", help="Number of samples."),
    out: Path = typer.Option(..., help="Output .npz: one uint8 array `samples`, N x C x H x W (+ FILE.json)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", "--method",
                                         help="Sampler over this checkpoint, e.g. ddim or dpmpp-2m for a ddpm run"
                                              " (default: the model's own)."),
    opt: Optional[List[str]] = typer.Option(None, "--opt", help="Sampler option, e.g. --opt eta=1 or --opt order=3."),
    grid: Optional[str] = typer.Option(None, "--grid", help="Time grid, e.g. karras or 'karras(rho=5)' or trailing"
                                                            " (default: the sampler's own)."),
    seed: int = typer.Option(0, help="Sampling seed (block b of --batch samples uses seed*1000003+b)."),
    batch: int = typer.Option(1000, help="Samples per network batch; block b uses seed*1000003+b, so a suite's"
                                         " sample_batch (1000 by default) gives the samples its rows were measured on."),
    guidance: Optional[str] = typer.Option(None, help="Class-conditional runs: guidance w (0 = conditional, no"
                                                      " guidance; diffusers' guidance_scale is 1 + w) or 'uncond'."),
    classes: str = typer.Option("uniform", help="Class-conditional runs: 'uniform' (seeded per block) or one class."),
    precision: str = typer.Option("fp32", "--precision", help="Networks while sampling: fp32 or bf16 (autocast)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the networks while sampling."),
    device: str = DEVICE,
):
    """Draw samples from a trained run into an .npz file (to score here or on another machine); with the suite's
    seed and batch, the samples a `bench compare` row of the same cell was measured on."""
    api = _api()
    with user_errors():
        path = api.sample(run, steps=steps, num=num, out=out, sampler=sampler, seed=seed, batch=batch,
                          sampler_opts=opt or [], device=device, log=typer.echo, guidance=guidance, classes=classes,
                          precision=precision, compile_=compile_, grid=grid)
        typer.echo(f"samples: {path}")


@app.command()
def evaluate(
    file: Path = typer.Argument(..., help="An .npz with `samples`: uint8 N x C x H x W, N x H x W x C or N x H x W."),
    dataset: str = typer.Option(..., help="Dataset the samples are scored against."),
    out: Optional[Path] = typer.Option(None, help="Folder for results.csv and spec.json (default: results/evaluate-*)."),
    suite: Optional[str] = typer.Option(None, help="Take metric options from this suite (default: the dataset's)."),
    seed: int = typer.Option(0, help="Seed of fresh reference data (toy datasets)."),
    device: str = DEVICE,
    data_dir: str = DATA_DIR,
    fid_weights: str = FID_WEIGHTS,
    vgg16_weights: str = VGG16_WEIGHTS,
    cache_dir: Path = CACHE_DIR,
    offline: bool = OFFLINE,
):
    """Score a sample file with every applicable metric; writes a one-row results.csv (compare's columns)."""
    api = _api()
    with user_errors():
        resources = api.metric_resources(fid_weights=fid_weights, vgg16_weights=vgg16_weights, cache_dir=cache_dir,
                                         offline=offline)
        out, row = api.evaluate(file, dataset=dataset, out=out, data_dir=data_dir, suite=suite, seed=seed,
                                device=device, resources=resources, log=typer.echo)
        typer.echo(api.row_summary(row) + f"\nresults: {out / 'results.csv'}")


@app.command()
def classifier(
    dataset: str = typer.Option("mnist", help="mnist or fashion-mnist (stackedmnist uses mnist's)."),
    retrain: bool = typer.Option(False, "--retrain", help="Train again even if a cached classifier matches."),
    device: str = DEVICE,
    data_dir: str = DATA_DIR,
    cache_dir: Path = CACHE_DIR,
):
    """Train the domain classifier used by MNIST-family metrics (cached; reused while its version matches)."""
    api = _api()
    with user_errors():
        info = api.classifier(dataset=dataset, data_dir=data_dir, cache_dir=cache_dir, retrain=retrain, device=device,
                              log=typer.echo)
        typer.echo(f"{dataset} classifier v{info['version']}: test accuracy {info['test_accuracy']:.4f}"
                   f" ({info['test_images']} test images), cached in {cache_dir}")


@app.command("import")
def import_(
    source: str = typer.Argument(..., help="A DDPMPipeline folder (model_index.json, unet/, scheduler/; safetensors),"
                                           " or a hub id such as google/ddpm-cifar10-32 when online."),
    dataset: str = typer.Option(..., help="The image dataset the model was trained on (its shape must match)."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: RUNS_DIR/<id>-ddpm-<dataset>)."),
    runs_dir: Path = RUNS_DIR,
    data_dir: str = DATA_DIR,
):
    """Turn a diffusers UNet2DModel + DDPMScheduler into a `ddpm` run that every eps sampler and
    `bench compare --model RUN` sample."""
    api = _api()
    with user_errors():
        run_dir = api.import_pipeline(source, dataset=dataset, runs_dir=runs_dir, data_root=data_dir, out=out,
                                      log=typer.echo)
        typer.echo(f"run: {run_dir}")


@app.command()
def export(
    run: Path = typer.Argument(..., help="A trained image ddpm run folder."),
    out: Path = typer.Argument(..., help="Folder to write (new or empty): DDPMPipeline.from_pretrained(OUT) loads it."),
):
    """Write a trained ddpm run (EMA weights) as a diffusers DDPMPipeline folder."""
    api = _api()
    with user_errors():
        api.export_run(run, out, log=typer.echo)


@app.command()
def report(
    results_dir: Path = typer.Argument(..., help="A folder written by `bench compare` (results.csv + spec.json)."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default: the one recorded in spec.json)."),
):
    """Re-render report.md and figures from results only (samples nothing)."""
    api = _api()
    with user_errors():
        typer.echo(f"report: {api.report(results_dir, out)}")


@app.command("list")
def list_():
    """Models, samplers (and which runs on which), datasets, suites and presets."""
    typer.echo(_api().listing())


def main() -> None:
    """Console entry point: like app(), but internal errors print one line unless BENCH_DEBUG=1."""
    try:
        rc = app(standalone_mode=False)
    except EXIT as e:
        sys.exit(e.exit_code)
    except NO_ARGS as e:  # `bench` alone: the help text
        e.show()
        sys.exit(0)
    except USAGE as e:  # a bad option, value or argument: one line, like every other user error
        message = " ".join(e.format_message().split())
        command = e.ctx.command_path if getattr(e, "ctx", None) is not None else "bench"
        typer.echo(f"error: {message} (see `{command} --help`)", err=True)
        sys.exit(2)
    except CLICK as e:
        e.show()
        sys.exit(e.exit_code)
    except ABORT + (KeyboardInterrupt,):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so in one line, keep the traceback one switch away
        if os.environ.get("BENCH_DEBUG"):
            raise
        typer.echo(f"internal error: {type(e).__name__}: {e} (set BENCH_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
