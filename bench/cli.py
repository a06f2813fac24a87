"""The `bench` command line. Each command resolves its options and calls one library function;
bad input ends with a one-line `error: ...` and exit code 2, before anything is written."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import List, Optional

import click
import typer

from bench.errors import BenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  rich_markup_mode=None, help="Train, sample and measure fast diffusion samplers on one harness.")

RUNS_DIR = typer.Option(Path("runs"), "--runs-dir", envvar="BENCH_RUNS_DIR", help="Where training runs live.")
DATA_DIR = typer.Option("", "--data-dir", envvar="BENCH_DATA_DIR", help="Folder with image datasets.")
PROGRESS = typer.Option(None, "--progress/--no-progress", help="Progress bar (default: when on a terminal).")


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


def _progress(flag: Optional[bool]) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@app.command()
def train(
    method: str = typer.Argument(..., help="Method to train (see `bench list`)."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the preset's, gaussians25 for toy)."),
    preset: Optional[str] = typer.Option(None, help="Training preset (default: the dataset's)."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML with [model]/[data]/[train], or a config.json."),
    T: Optional[int] = typer.Option(None, "--T", help="Number of diffusion steps T (methods with a discrete T)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a config key: --set train.steps=1000."),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: RUNS_DIR/<id>-<method>-<dataset>...)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run folder's latest checkpoint."),
    runs_dir: Path = RUNS_DIR,
    data_dir: str = DATA_DIR,
    progress: Optional[bool] = PROGRESS,
):
    """Train one method; checkpoints, stats.jsonl and preview.png go into its run folder."""
    from bench.commands import train_command

    with user_errors():
        run_dir = train_command(method, dataset=dataset, preset=preset, config=config, T=T, sets=set_ or [],
                                out=out, resume=resume, runs_dir=runs_dir, data_dir=data_dir,
                                progress=_progress(progress), log=typer.echo)
        typer.echo(f"run: {run_dir}")


@app.command()
def compare(
    suite: Optional[str] = typer.Option(None, help="Benchmark suite (default: toy, or the dataset's suite)."),
    methods: Optional[str] = typer.Option(None, help="Comma-separated methods or suite variants."),
    dataset: Optional[str] = typer.Option(None, help="Dataset (default: the suite's)."),
    steps: Optional[str] = typer.Option(None, help="Comma-separated step counts; each method keeps those it supports."),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Samples per cell."),
    seed: Optional[int] = typer.Option(None, help="Sampling seed."),
    out: Optional[Path] = typer.Option(None, help="Write results.csv, spec.json and report.md here."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    runs_dir: Path = RUNS_DIR,
    data_dir: str = DATA_DIR,
    progress: Optional[bool] = PROGRESS,
):
    """Train missing checkpoints, sample every (method, steps) cell, measure, and write a report."""
    from bench.commands import compare_command

    with user_errors():
        results_dir, report = compare_command(suite=suite, methods=methods, dataset=dataset, steps=steps,
                                              num_samples=num_samples, seed=seed, out=out, device=device,
                                              runs_dir=runs_dir, data_dir=data_dir, progress=_progress(progress),
                                              log=typer.echo)
        typer.echo(f"results: {results_dir / 'results.csv'}\nreport: {report}")


@app.command()
def report(
    results_dir: Path = typer.Argument(..., help="A folder written by `bench compare` (results.csv + spec.json)."),
    out: Optional[Path] = typer.Option(None, help="Report folder (default: the one recorded in spec.json)."),
):
    """Re-render report.md and figures from results only (samples nothing)."""
    from bench.report import render_report

    with user_errors():
        typer.echo(f"report: {render_report(results_dir, out)}")


@app.command("list")
def list_():
    """Methods, datasets, suites and presets."""
    from bench.commands import listing

    typer.echo(listing())


def main() -> None:
    """Console entry point: like app(), but internal errors print one line unless BENCH_DEBUG=1."""
    try:
        rc = app(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: say so in one line, keep the traceback one switch away
        if os.environ.get("BENCH_DEBUG"):
            raise
        typer.echo(f"internal error: {type(e).__name__}: {e} (set BENCH_DEBUG=1 for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
