"""What a comparison measures: a suite file resolved with command-line overrides into a CompareSpec.

A suite (bench/config/suites/<name>.toml) names a dataset, a training preset, the samplers
(`methods`), the models they run on (`models`; default: each sampler's own), the step
counts per sampler (`[steps]`) or NFE budgets (`nfe`, a list for every sampler or a table
per sampler: each budget picks the most steps whose NFE fits), sampler options
(`[sampler.<name>]`), named variants (a sampler with config overrides, options, a model,
steps or budgets of its own, such as DDGAN's ablations), the number of samples, the timing
protocol, the image-metric options ([metrics], see bench/config/metric_options.py) and `notes`
for the report. Sampler options and budgets never enter a training config: the checkpoint
a cell samples depends on its model, preset and overrides only.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import methods
from bench.config.run import RunConfig, resolve_run_config
from bench.config.run import read_run_config, run_dir_for
from bench.config.values import load_toml
from bench.config.suite_schema import check_suite
from bench.config.datasets import get_dataset_info
from bench.config.identity import LATER, NOT_MEASURED, identity, short_hash
from bench.errors import BenchError
from bench.config.metric_options import MetricOptions
from methods.grids import Grid
from methods.guidance import Guidance

SUITES_DIR = Path(__file__).parent / "suites"


@dataclasses.dataclass(frozen=True)
class TimingSpec:
    """The timing protocol of a suite ([timing]; bench/measure/timing.py measures with it)."""

    batch: int = 100
    warmup: int = 10  # untimed rounds
    repeats: int = 20  # timed rounds (one sampler call and the forwards of each network)
    max_seconds: float = 30.0  # per measurement; 0 = no cap


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row of the results: a sampler on a model at a step count, from one checkpoint."""

    sampler: str = dataclasses.field(metadata={"id_key": "method"})  # the sampler's registry name (column `sampler`)
    steps: int
    variant: str = ""  # suite variant name; "" for the sampler's own entry
    overrides: tuple[tuple[str, Any], ...] = ()  # config --set items that select the checkpoint
    sampler_options: tuple[tuple[str, Any], ...] = dataclasses.field(default=(), metadata={"id_key": "sampler"})
    # sampler options (never part of the checkpoint)
    # the model's registry name; "" is the sampler's default model
    model: str = dataclasses.field(default="", metadata=LATER)
    # the NFE budget this step count was chosen for; 0 when steps were asked for
    nfe_target: int = dataclasses.field(default=0, metadata=LATER)
    # a training seed of the grid's `seeds` axis (train.seed, and the sampling seed); None:
    seed: int | None = dataclasses.field(default=None, metadata=LATER)
    # the preset's train.seed and the suite's sampling seed (a grid without a seeds axis)
    # a class-conditional model's guidance w ('0', '0.5') or 'uncond'; "" for unconditional models
    guidance: str = dataclasses.field(default="", metadata=LATER)
    # a run folder given as --model (an imported or hand-trained run), sampled as it is; "" otherwise
    run: str = dataclasses.field(default="", metadata=LATER)
    # the time grid (methods/grids.py canonical text, e.g. 'karras'); "" is the sampler's default
    grid: str = dataclasses.field(default="", metadata=LATER)

    def grid_spec(self) -> Grid | None:
        """The cell's methods.grids.Grid; None for the sampler's default grid."""
        return Grid.parse(self.grid) if self.grid else None

    def guidance_spec(self):
        """The cell's methods.guidance.Guidance, None for an unconditional model."""
        return Guidance.parse(self.guidance) if self.guidance else None

    @property
    def model_name(self) -> str:
        """The model's registry name (a pinned run's: the method it was trained as)."""
        return self.model or methods.get_sampler(self.sampler).default_model

    @property
    def model_label(self) -> str:
        """What rows call the model: its registry name, or a pinned run's folder name; "" for the default."""
        return Path(self.run).name if self.run else self.model

    def options(self) -> Any:
        return methods.get_sampler(self.sampler).Options(**dict(self.sampler_options))

    def as_dict(self) -> dict[str, Any]:
        """The cell as grids hash it (bench/config/identity.py)."""
        return identity(self)


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    name: str = dataclasses.field(metadata=NOT_MEASURED)  # the results folder's name
    suite: str
    dataset: str
    preset: str
    cells: tuple[Cell, ...]
    num_samples: int
    seed: int
    sample_batch: int
    timing: TimingSpec
    data_root: str = dataclasses.field(default="", metadata=NOT_MEASURED)
    bpd_images: int = 10_000  # test images scored for bits/dim (methods with a likelihood, image data)
    metrics: MetricOptions = MetricOptions()  # image metrics (toy data ignores them)
    notes: tuple[str, ...] = dataclasses.field(default=(), metadata=NOT_MEASURED)  # for the report
    command: str = dataclasses.field(default="", metadata=NOT_MEASURED)  # the `bench compare` line that asked for it
    # training seeds: each cell is trained and sampled once per seed; () = one run
    seeds: tuple[int, ...] = dataclasses.field(default=(), metadata=LATER)
    # resamples for a bootstrap interval over samples within each row; 0 = none
    bootstrap: int = dataclasses.field(default=0, metadata=LATER)
    # the guidance axis of class-conditional models; () = w 0 (conditional)
    guidance: tuple[str, ...] = dataclasses.field(default=(), metadata=LATER)
    # the classes a conditional model is asked for: uniform (seeded per block) or one class
    classes: str = dataclasses.field(default="uniform", metadata=LATER)
    # how the networks run while sampling: fp32 or bf16 (bench/measure/runtime.py)
    precision: str = dataclasses.field(default="fp32", metadata=LATER)
    # torch.compile the networks' forwards while sampling
    compile: bool = dataclasses.field(default=False, metadata=LATER)
    run_configs: tuple[tuple[Cell, RunConfig], ...] = dataclasses.field(default=(), metadata=NOT_MEASURED, repr=False,
                                                                  compare=False)
    # each cell's run config, computed once by with_run_configs (derived from the fields above, never hashed)

    @property
    def conditional(self) -> bool:
        """Whether any cell samples a class-conditional model (its rows get labels and accuracy)."""
        return any(c.guidance for c in self.cells)

    def grid_dict(self) -> dict[str, Any]:
        """Everything that determines the numbers (bench/config/identity.py); toy data takes no metric options."""
        d = identity(self)
        if get_dataset_info(self.dataset).kind != "image":
            d.pop("metrics")
        return d

    def grid_hash(self) -> str:
        return short_hash(self.grid_dict())

    def with_run_configs(self) -> "CompareSpec":
        """This spec with every cell's run config computed once and kept (run_config then looks it up)."""
        return dataclasses.replace(self, run_configs=tuple((c, self._run_config(c)) for c in self.cells))

    def run_config(self, cell: Cell) -> RunConfig:
        """The training configuration of the checkpoint a cell samples (a pinned run's own config.json)."""
        kept = dict(self.run_configs)
        return kept[cell] if cell in kept else self._run_config(cell)

    def _run_config(self, cell: Cell) -> RunConfig:
        if cell.run:
            cfg = read_run_config(Path(cell.run))
            return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=self.data_root)) \
                if self.data_root else cfg
        model = methods.get_model(cell.model_name)
        sets = {**dict(cell.overrides), **{f"model.{k}": v for k, v in model.steps_overrides(cell.steps).items()}}
        if self.data_root:
            sets["data.root"] = self.data_root
        if cell.seed is not None:
            sets["train.seed"] = cell.seed
        return resolve_run_config(model.name, model_cls=model.Config, preset=self.preset, dataset=self.dataset,
                                  sets=sets)

    def run_dir(self, cell: Cell, runs_dir: Path, cfg: RunConfig | None = None) -> Path:
        """Where a cell's checkpoint lives: its pinned run folder, or its place in `runs_dir` (from `cfg`,
        the cell's run_config, when the caller has it)."""
        return Path(cell.run) if cell.run else run_dir_for(cfg or self.run_config(cell), runs_dir)

    def sampling_seed(self, cell: Cell) -> int:
        """The seed of a cell's samples (and of its fresh reference data): its training seed on a seeds axis."""
        return self.seed if cell.seed is None else cell.seed

    @property
    def seed_list(self) -> tuple[int | None, ...]:
        """The seeds the grid runs: its `seeds` axis, or (None,) for one run per cell."""
        return self.seeds or (None,)


def list_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


def suite_path(name: str) -> Path:
    """A suite by name (bench/config/suites/<name>.toml) or a path to your own TOML file."""
    return Path(name) if name.endswith(".toml") else SUITES_DIR / f"{name}.toml"


def load_suite(name: str) -> dict[str, Any]:
    path = suite_path(name)
    if not path.exists():
        raise BenchError(f"unknown suite {name!r}; choose from: {', '.join(list_suites())}, or a path to a .toml file")
    return check_suite(load_toml(path, "suite"), f"suite {path}")
