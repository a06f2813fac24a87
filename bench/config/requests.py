"""What a caller asks bench to do, built once by the CLI or by Python code: a CompareRequest, a TrainRequest."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from bench.errors import BenchError
from methods.grids import split_top_level


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BenchError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values:
        raise BenchError(f"{what} is empty; give e.g. {what}=1,4,16")
    return values


def parse_names(text: str, what: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names:
        raise BenchError(f"{what} is empty")
    return names


def _parsed(parse, text: str | None, flag: str):
    return None if text is None else tuple(parse(text, flag))


@dataclasses.dataclass(frozen=True)
class CompareRequest:
    """`bench compare` as asked: a suite and what the caller overrides (None keeps the suite's own value), then
    where the work happens (no effect on the numbers). The CLI and Python callers build one; nothing else
    retypes these options."""

    suite: str | None = None  # a suite name or a .toml path; None: the dataset's suite, else toy
    samplers: tuple[str, ...] | None = None  # sampler names or suite variants (--samplers, also --methods)
    models: tuple[str, ...] | None = None  # model registry names or run folders every sampler runs on
    dataset: str | None = None
    steps: tuple[int, ...] | None = None
    nfe: tuple[int, ...] | None = None  # NFE budgets: each sampler takes the most steps whose calls fit
    num_samples: int | None = None
    seed: int | None = None  # the sampling seed of a grid without a seeds axis
    seeds: tuple[int, ...] | None = None  # training seeds
    bootstrap: int | None = None
    guidance: tuple[str, ...] | None = None
    classes: str | None = None
    precision: str | None = None
    compile: bool | None = None
    latent: str | None = None
    grids: tuple[str, ...] | None = None
    data_root: str = ""
    out: Path | None = None  # results (and report) folder; None: results/<name> and reports/<name>
    runs_dir: Path = Path("runs")
    device: str = "auto"
    progress: bool = False
    fid_weights: str = ""  # metric weights and caches (bench/config/metric_options.py MetricResources)
    vgg16_weights: str = ""
    cache_dir: str = ""
    offline: bool = False  # True: never download metric weights (without local files those metrics stay empty)

    def command(self) -> str:
        """The `bench compare` line that asks for this grid (where it runs left out): what a report prints to rerun."""
        flags = [("--suite", self.suite), ("--samplers", self.samplers), ("--model", self.models),
                 ("--dataset", self.dataset), ("--steps", self.steps), ("--nfe", self.nfe),
                 ("--num-samples", self.num_samples), ("--seed", self.seed), ("--seeds", self.seeds),
                 ("--bootstrap", self.bootstrap), ("--guidance", self.guidance), ("--classes", self.classes),
                 ("--precision", self.precision), ("--latent", self.latent), ("--grid", self.grids)]
        words = ["bench", "compare"]
        for flag, value in flags:
            if value is not None:
                words += [flag, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
        if self.compile is not None:
            words.append("--compile" if self.compile else "--no-compile")
        return " ".join(shlex.quote(w) for w in words)

    @classmethod
    def from_text(cls, *, samplers: str | None = None, models: str | None = None, steps: str | None = None,
                  nfe: str | None = None, seeds: str | None = None, guidance: str | None = None,
                  grids: str | None = None, **fields) -> "CompareRequest":
        """A request from command-line text: comma-separated lists are split here, each error naming its flag."""
        try:
            grid_list = None if grids is None else tuple(split_top_level(grids))
        except ValueError as e:
            raise BenchError(str(e)) from None
        return cls(samplers=_parsed(parse_names, samplers, "--samplers"),
                   models=_parsed(parse_names, models, "--model"),
                   steps=_parsed(parse_int_list, steps, "--steps"), nfe=_parsed(parse_int_list, nfe, "--nfe"),
                   seeds=_parsed(parse_int_list, seeds, "--seeds"),
                   guidance=_parsed(parse_names, guidance, "--guidance"), grids=grid_list, **fields)


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """`bench train` as asked: one model, its preset and overrides (layered: preset < --config < flags < --set),
    and where its run folder goes."""

    model: str
    dataset: str | None = None  # None: the preset's (gaussians25 for toy)
    preset: str | None = None  # None: the dataset's
    config: Path | None = None  # TOML with [model]/[data]/[train], or a config.json
    T: int | None = None  # a discrete model's T
    sets: tuple[str, ...] = ()  # KEY=VALUE overrides
    out: Path | None = None  # the run folder; None: RUNS_DIR/<id>-<model>-<dataset>...
    resume: bool = False
    log_with: str | None = None  # an Accelerate tracker, e.g. tensorboard
    latent: str | None = None  # 'autoencoder' or an autoencoder run folder (sets data.latent)
    runs_dir: Path = Path("runs")
    data_root: str = ""
    progress: bool = False
