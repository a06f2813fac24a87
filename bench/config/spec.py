"""What a comparison measures: a suite file resolved with command-line overrides into a CompareSpec.

A suite (bench/suites/<name>.toml) names a dataset, a training preset, the samplers
(`methods`), the models they run on (`models`; default: each sampler's own), the step
counts per sampler (`[steps]`) or NFE budgets (`nfe`, a list for every sampler or a table
per sampler: each budget picks the most steps whose NFE fits), sampler options
(`[sampler.<name>]`), named variants (a sampler with config overrides, options, a model,
steps or budgets of its own, such as DDGAN's ablations), the number of samples, the timing
protocol, the image-metric options ([metrics], see bench/metrics/options.py) and `notes`
for the report. Sampler options and budgets never enter a training config: the checkpoint
a cell samples depends on its model, preset and overrides only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import methods
from bench.config.run import (
    DataConfig,
    RunConfig,
    TrainConfig,
    build,
    latent_option,
    load_toml,
    qualify,
    read_run_config,
    resolve_run_config,
    run_dir_for,
    validate_run,
)
from bench.config.suite_schema import MAX_BOOTSTRAP, MAX_SAMPLES, MAX_SEED, check_suite
from bench.data.registry import DATASETS, get_dataset_info
from bench.errors import BenchError
from bench.measure import runtime
from bench.measure.timing import TimingSpec
from bench.metrics.options import MetricOptions, validate_options
from bench.runs.checkpoint import latest_checkpoint
from methods.grids import Grid, parse_grids
from methods.guidance import UNCOND, Guidance

SUITES_DIR = Path(__file__).parent / "suites"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One row of the results: a sampler on a model at a step count, from one checkpoint."""

    sampler: str  # the sampler's registry name (results column `sampler`)
    steps: int
    variant: str = ""  # suite variant name; "" for the sampler's own entry
    overrides: tuple[tuple[str, Any], ...] = ()  # config --set items that select the checkpoint
    sampler_options: tuple[tuple[str, Any], ...] = ()  # sampler options (never part of the checkpoint)
    model: str = ""  # the model's registry name; "" is the sampler's default model
    nfe_target: int = 0  # the NFE budget this step count was chosen for; 0 when steps were asked for
    seed: int | None = None  # a training seed of the grid's `seeds` axis (train.seed, and the sampling seed); None:
    # the preset's train.seed and the suite's sampling seed (a grid without a seeds axis)
    guidance: str = ""  # a class-conditional model's guidance w ('0', '0.5') or 'uncond'; "" for unconditional models
    run: str = ""  # a run folder given as --model (an imported or hand-trained run), sampled as it is; "" otherwise
    grid: str = ""  # the time grid (methods/grids.py canonical text, e.g. 'karras'); "" is the sampler's default

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
        """The cell as grids hash it: fields at their defaults are left out, so grids written before
        a field existed keep their hash."""
        d = dataclasses.asdict(self)
        for key in ("model", "nfe_target", "guidance", "run", "grid"):
            if not d[key]:
                d.pop(key)
        if d["seed"] is None:
            d.pop("seed")
        return d


@dataclasses.dataclass(frozen=True)
class CompareSpec:
    name: str
    suite: str
    dataset: str
    preset: str
    cells: tuple[Cell, ...]
    num_samples: int
    seed: int
    sample_batch: int
    timing: TimingSpec
    data_root: str = ""
    bpd_images: int = 10_000  # test images scored for bits/dim (methods with a likelihood, image data)
    metrics: MetricOptions = MetricOptions()  # image metrics (toy data ignores them)
    notes: tuple[str, ...] = ()  # for the report; no effect on the numbers
    seeds: tuple[int, ...] = ()  # training seeds: each cell is trained and sampled once per seed; () = one run
    bootstrap: int = 0  # resamples for a bootstrap interval over samples within each row; 0 = none
    guidance: tuple[str, ...] = ()  # the guidance axis of class-conditional models; () = w 0 (conditional)
    classes: str = "uniform"  # the classes a conditional model is asked for: uniform (seeded per block) or one class
    precision: str = "fp32"  # how the networks run while sampling: fp32 or bf16 (bench/runtime.py)
    compile: bool = False  # torch.compile the networks' forwards while sampling

    @property
    def conditional(self) -> bool:
        """Whether any cell samples a class-conditional model (its rows get labels and accuracy)."""
        return any(c.guidance for c in self.cells)

    def grid_dict(self) -> dict[str, Any]:
        """Everything that determines the numbers (not where they are written)."""
        d = dataclasses.asdict(self)
        for key in ("name", "data_root", "notes"):
            d.pop(key)
        for key in ("seeds", "bootstrap", "guidance"):  # absent at their defaults: older grids keep their hash
            if not d[key]:
                d.pop(key)
        if d["classes"] == "uniform":
            d.pop("classes")
        if d["precision"] == "fp32":
            d.pop("precision")
        if not d["compile"]:
            d.pop("compile")
        d["cells"] = [c.as_dict() for c in self.cells]
        if get_dataset_info(self.dataset).kind != "image":
            d.pop("metrics")  # toy metrics have no options
        return json.loads(json.dumps(d))

    def grid_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.grid_dict(), sort_keys=True).encode()).hexdigest()[:8]

    def run_config(self, cell: Cell) -> RunConfig:
        """The training configuration of the checkpoint a cell samples (a pinned run's own config.json)."""
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
    """A suite by name (bench/suites/<name>.toml) or a path to your own TOML file."""
    return Path(name) if name.endswith(".toml") else SUITES_DIR / f"{name}.toml"


def load_suite(name: str) -> dict[str, Any]:
    path = suite_path(name)
    if not path.exists():
        raise BenchError(f"unknown suite {name!r}; choose from: {', '.join(list_suites())}, or a path to a .toml file")
    return check_suite(load_toml(path, "suite"), f"suite {path}")


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


def _sections(model: type) -> dict[str, type]:
    return {"model": model.Config, "data": DataConfig, "train": TrainConfig}


def _frozen(items: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Sorted (key, value) pairs with lists as tuples, so that a cell stays hashable whatever TOML gave
    (`set = { "model.net.fourier_freqs" = [1, 2] }`); the config's coercion takes tuples for lists."""
    def freeze(v):
        return tuple(freeze(x) for x in v) if isinstance(v, (list, tuple)) else v
    return tuple(sorted((k, freeze(v)) for k, v in items.items()))


def _base_model(model: type, preset: str, dataset: str, overrides: dict[str, Any]) -> Any:
    return resolve_run_config(model.name, model_cls=model.Config, preset=preset, dataset=dataset,
                              sets=overrides).model


def _sampler_or_error(name: str, variants: dict) -> type:
    try:
        return methods.get_sampler(name)
    except ValueError as e:
        extra = f"; this suite's variants: {', '.join(variants)}" if variants else ""
        raise BenchError(f"{e}{extra}") from None


def _model_or_error(name: str) -> type:
    try:
        return methods.get_model(name)
    except ValueError as e:
        if any(c in name for c in "/\\.") or Path(name).exists():
            raise BenchError(f"--model {name}: not a run folder (no config.json) and not a model name; {e}") from None
        raise BenchError(str(e)) from None


def is_run_folder(name: str) -> bool:
    """A --model entry that names a run folder (one holding config.json) rather than a registered model."""
    return name not in methods.list_models() and (Path(name) / "config.json").is_file()


def pinned_runs(names: list[str]) -> dict[str, RunConfig]:
    """The run folders among --model entries, with their configs; each must hold a checkpoint."""

    out = {}
    for name in names:
        if is_run_folder(name):
            cfg = read_run_config(Path(name))
            if latest_checkpoint(Path(name)) is None:
                raise BenchError(f"--model {name} has no checkpoint yet; train it (bench train ... --out {name} --resume)")
            out[name] = cfg
        else:
            _model_or_error(name)
    return out


def _steps_for(name: str, sampler: type, model: type, wanted: list[tuple[int | None, int]], base: Any, opts: Any,
               *, strict: bool, flag: str, notes: list[str], grid: Grid | None = None) -> list[tuple[int, int]]:
    """Valid (steps, budget) pairs among `wanted`. A suite's step grid must be all valid (strict);
    --steps and NFE budgets keep each sampler's valid values (what they skip goes into `notes`) and
    are errors only when they leave a sampler with none."""
    if sampler.adaptive and flag == "--nfe":  # its tolerances, not a budget, set its calls: one row
        notes.append(f"{name} on {model.name} is adaptive: one row, whose NFE is measured rather than budgeted")
        return [(sampler.valid_steps(model, base, opts, grid).lo, 0)]
    keep, errors = [], []
    for s, budget in wanted:
        if s is None:
            errors.append(f"no step count fits NFE budget {budget} (its fewest steps make"
                          f" {sampler.nfe(sampler.valid_steps(model, base, opts, grid).lo, opts, grid)} calls)")
            continue
        cfg = dataclasses.replace(base, **model.steps_overrides(s)) if model.steps_are_trained else base
        try:
            model.check_config(cfg)  # a trained step count (DDGAN's T) must be trainable
            error = sampler.valid_steps(model, cfg, opts, grid).error(s)
        except ValueError as e:
            error = str(e)
        (errors.append(error) if error else keep.append((s, budget)))
    if errors and (strict or not keep):
        asked = ",".join(str(budget or s) for s, budget in wanted)
        hint = "" if strict else f"; none of {flag} {asked} applies: add a valid value or drop {name}"
        raise BenchError(f"{name}: {errors[0]}{hint}")
    if errors and flag == "--nfe":
        notes += [f"{name} on {model.name}: {e}" for e in errors]
    return keep


def sampler_options(cls: type, opts: dict, name: str) -> dict:
    """Sampler options from a suite or --set, checked against the sampler's Options dataclass."""
    if not opts:
        return {}
    if not dataclasses.fields(cls.Options):
        raise BenchError(f"{name} takes no sampler options, got {', '.join(opts)}")
    return dataclasses.asdict(build(cls.Options, opts, f"sampler.{name}."))


def _per_sampler(value: Any, name: str) -> list[int] | None:
    """A suite's `nfe` / `steps`: a list for every sampler, or a table keyed by sampler name."""
    if isinstance(value, dict):
        value = value.get(name)
    return list(value) if value else None


def _wanted(sampler: type, model: type, name: str, var: dict, raw: dict, base: Any, opts: Any, *,
            steps: list[int] | None, nfe: list[int] | None, grid: Grid | None = None
            ) -> tuple[list[tuple[int, int]], bool, str]:
    """(steps, NFE budget) pairs for one sampler on one model, whether they must all be valid, and the
    flag they came from: --steps, else --nfe, else the variant's or suite's steps, then its budgets."""
    if steps:
        return [(s, 0) for s in steps], False, "--steps"
    own_steps = var.get("steps") or _per_sampler(raw.get("steps", {}), var.get("method", name))
    budgets = nfe or (None if own_steps else var.get("nfe") or _per_sampler(raw.get("nfe"), var.get("method", name)))
    if budgets:
        for b in budgets:
            if int(b) < 1:
                raise BenchError(f"NFE budgets must be positive integers, got {b}")
        def pick(b):
            cfg = dataclasses.replace(base, **model.steps_overrides(b)) if model.steps_are_trained else base
            return sampler.steps_for_nfe(int(b), model, cfg, opts, grid)
        return [(pick(b), int(b)) for b in budgets], False, "--nfe"
    return [(s, 0) for s in own_steps or [sampler.default_steps(model, base)]], True, "--steps"


def _build(suite: str, raw: dict[str, Any], *, names: list[str] | None = None, dataset: str | None = None,
           steps: list[int] | None = None, nfe: list[int] | None = None, models_: list[str] | None = None,
           num_samples: int | None = None, seed: int | None = None, data_root: str = "",
           seeds: list[int] | None = None, bootstrap: int | None = None, guidance: list[str] | None = None,
           classes: str | None = None, precision: str | None = None, compile_: bool | None = None,
           latent: str | None = None, grids: list[str] | None = None) -> CompareSpec:

    dataset = dataset or raw.get("dataset", "gaussians25")
    precision = raw.get("precision", "fp32") if precision is None else precision
    compile_ = bool(raw.get("compile", False)) if compile_ is None else compile_
    runtime.check(precision, compile_)
    info = get_dataset_info(dataset)
    metrics = build(MetricOptions, raw.get("metrics", {}), "metrics.")
    validate_options(metrics)
    preset = raw.get("preset") or info.preset
    variants = raw.get("variants", {})
    num_samples = raw.get("num_samples", 5000) if num_samples is None else num_samples
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise BenchError(f"--num-samples must be in 1..{MAX_SAMPLES}, got {num_samples}")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise BenchError(f"--seed must be in 0..{MAX_SEED}, got {seed}")
    seeds = _seeds(raw.get("seeds", []) if seeds is None else seeds)
    bootstrap = int(raw.get("bootstrap", 0) if bootstrap is None else bootstrap)
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise BenchError(f"--bootstrap must be in 0..{MAX_BOOTSTRAP} resamples (0 = no interval), got {bootstrap}")
    if steps is not None and any(s < 1 for s in steps):
        raise BenchError(f"--steps must be positive integers, got {','.join(map(str, steps))}")
    if steps and nfe:
        raise BenchError("give --steps or --nfe, not both: --nfe picks each sampler's steps from its NFE budget")
    pinned = pinned_runs(list(models_ or raw.get("models", [])))
    for name, cfg in pinned.items():
        if cfg.data.name != dataset:
            raise BenchError(f"--model {name} was trained on {cfg.data.name}, not {dataset}; add --dataset {cfg.data.name}")
        if seeds or (seeds is None and raw.get("seeds")):
            raise BenchError(f"--model {name} is one trained run: it cannot follow a seeds axis; drop --seeds")

    def model_of(m: str) -> type:
        return methods.get_model(pinned[m].method) if m in pinned else _model_or_error(m)
    for name in raw.get("sampler", {}):
        _sampler_or_error(name, variants)
    guidance_axis = _guidance_axis(raw.get("guidance", []) if guidance is None else guidance)
    grid_axis = _grid_axis(raw.get("grid", []) if grids is None else grids)
    classes = str(raw.get("classes", "uniform") if classes is None else classes).strip()
    cells: list[Cell] = []
    notes: list[str] = list(raw.get("notes", ()))
    for name in dict.fromkeys(names or list(raw.get("methods", [])) + list(variants)):  # each name once
        var = variants.get(name, {})
        sampler = _sampler_or_error(var.get("method", name), variants)
        wanted_models = models_ or ([var["model"]] if "model" in var else None) or raw.get("models") \
            or [sampler.default_model]
        usable = [m for m in wanted_models if sampler.runs_on(model_of(m)) is None]
        if not usable:
            reason = sampler.runs_on(model_of(wanted_models[0]))
            raise BenchError(f"{name} cannot run on {', '.join(wanted_models)}: {reason}; drop it or name another model")
        opts = sampler_options(sampler, {**raw.get("sampler", {}).get(sampler.name, {}), **var.get("sampler", {})},
                               name)
        try:
            options = sampler.Options(**opts)
            sampler.validate(options)
        except (TypeError, ValueError) as e:
            raise BenchError(str(e) if str(e).startswith(sampler.name) else f"{name}: {e}") from None
        for model_name in usable:
            model = model_of(model_name)
            if getattr(model, "needs_images", False) and info.kind != "image":
                raise BenchError(f"model {model_name} is the ideal denoiser of a set of training images; {dataset} is"
                                 " not an image dataset (use mnist, fashion-mnist, cifar10 or a folder)")
            if model.needs_mixture and not info.mixture:
                raise BenchError(f"model {model_name} needs an isotropic Gaussian mixture dataset"
                                 f" ({', '.join(d for d, i in DATASETS.items() if i.mixture)}), not {dataset}")
            overrides = qualify(var.get("set", {}), _sections(model))
            if latent:  # --latent: every cell in that autoencoder's latent space
                if model_name in pinned:
                    raise BenchError(f"--latent applies to models trained here; --model {model_name} is a trained run"
                                     " sampled as it is (its own data.latent decides)")
                overrides = {**overrides, "data.latent": latent_option(latent)}
            if model_name in pinned and overrides:
                raise BenchError(f"{name} sets training options ({', '.join(overrides)}), but --model {model_name} is"
                                 " a trained run sampled as it is; drop the variant or the run folder")
            base = pinned[model_name].model if model_name in pinned else _base_model(model, preset, dataset, overrides)
            conditional = model.num_classes(base) > 0
            if conditional:
                check_classes(classes, model.num_classes(base), model.name)
            for grid in _grids_for(name, sampler, model_name, grid_axis, var, notes):
                cells += _cells_on_grid(name, sampler, model, model_name, grid, var, raw, base, options, opts,
                                        overrides, steps=steps, nfe=nfe, notes=notes, pinned=pinned,
                                        guidance_axis=guidance_axis, conditional=conditional, existing=cells)
    if guidance_axis and not any(c.guidance for c in cells):
        raise BenchError("guidance needs a class-conditional model, and this grid has none: train one with --set"
                         " model.num_classes=K (the dataset's classes), or drop --guidance")
    cells = [dataclasses.replace(c, seed=s) if s is not None else c for s in (seeds or [None]) for c in cells]
    return CompareSpec(name=suite_path(suite).stem, suite=suite, dataset=dataset, preset=preset, cells=tuple(cells),
                       num_samples=num_samples, seed=raw.get("seed", 0) if seed is None else seed,
                       sample_batch=int(raw.get("sample_batch", 1000)),
                       timing=build(TimingSpec, raw.get("timing", {}), "timing."), data_root=data_root,
                       bpd_images=int(raw.get("bpd_images", 10_000)), metrics=metrics, notes=tuple(notes),
                       seeds=tuple(seeds), bootstrap=bootstrap, guidance=tuple(guidance_axis), classes=classes,
                       precision=precision, compile=compile_)


def _grid_axis(values) -> list[str]:
    """A grid axis (suite `grid`, --grid) as canonical grid texts, each once."""
    if isinstance(values, str):
        values = [values]
    try:
        return [g.text for g in parse_grids(values)]
    except ValueError as e:
        raise BenchError(str(e)) from None


def _grids_for(name: str, sampler: type, model_name: str, axis: list[str], var: dict, notes: list[str]
               ) -> list[Grid | None]:
    """The grids one sampler runs on: the variant's `grid`, else the axis; those it cannot run on are
    skipped with a note (when none is left, its own default grid, with a note); samplers with their own grid
    ignore the axis."""
    wanted = _grid_axis(var["grid"]) if "grid" in var else axis
    if not wanted:
        return [None]
    if not sampler.grid_kinds:
        notes.append(f"{name} samples on its own grid (trained steps or time grid): the grid axis does not apply")
        return [None]
    keep, errors = [], []
    for text in wanted:
        try:
            keep.append(sampler.grid_of(Grid.parse(text)))
        except ValueError as e:
            errors.append(str(e))
    if not keep:  # none of the axis fits: the sampler keeps its own default grid, and says so
        notes.append(f"{name} on {model_name}: {errors[0]}; none of the grid axis fits it, so its rows are on its own"
                     f" default grid ({sampler.default_grid})")
        return [None]
    notes += [f"{name} on {model_name}: {e}, so that grid has no {name} rows" for e in errors]
    return keep


def _cells_on_grid(name: str, sampler: type, model: type, model_name: str, grid: Grid | None, var: dict, raw: dict,
                   base: Any, options: Any, opts: dict, overrides: dict, *, steps, nfe, notes: list[str],
                   pinned: dict, guidance_axis: list[str], conditional: bool, existing: list[Cell]) -> list[Cell]:
    """The cells of one sampler on one model and grid: its steps (or NFE budgets) x the guidance axis."""
    wanted, strict, flag = _wanted(sampler, model, name, var, raw, base, options, steps=steps, nfe=nfe, grid=grid)
    pairs = _steps_for(name, sampler, model, wanted, base, options, strict=strict, flag=flag, notes=notes, grid=grid)
    cells: list[Cell] = []
    if model_name in pinned and model.steps_are_trained:  # its step count was fixed by training
        pairs = [(s, b) for s, b in pairs if dataclasses.replace(base, **model.steps_overrides(s)) == base]
        if not pairs:
            fixed = ", ".join(f"{k}={getattr(base, k)}" for k in model.steps_overrides(1))
            raise BenchError(f"--model {model_name} was trained for its own step count ({fixed}); ask for"
                             " those steps")
    axis = (guidance_axis or ["0"]) if conditional else [""]
    if conditional and not model.guided and axis != ["0"]:  # DDGAN: conditional, never guided
        notes.append(f"{name} on {model_name}: conditional without guidance, so only guidance 0 (it trains no"
                     " null class)")
        axis = ["0"]
    for s, budget in pairs:
        for g in axis:
            cell = Cell(sampler=sampler.name, steps=s, variant=name if name != sampler.name else "",
                        overrides=_frozen(overrides), sampler_options=_frozen(opts),
                        model=model.name if model_name in pinned else
                        ("" if model_name == sampler.default_model else model_name), nfe_target=budget,
                        guidance=g, run=str(Path(model_name).resolve()) if model_name in pinned else "",
                        grid=grid.text if grid is not None else "")
            if not any(dataclasses.replace(c, nfe_target=0) == dataclasses.replace(cell, nfe_target=0)
                       for c in existing + cells):  # two budgets that pick the same steps make one row
                cells.append(cell)
    return cells


def _guidance_axis(values: list) -> list[str]:
    """Guidance values as canonical text ('0', '0.5', 'uncond'), each once, in the order given."""
    out = []
    for v in values:
        try:
            text = Guidance.parse(v).text
        except ValueError as e:
            raise BenchError(f"{e} (--guidance takes e.g. 0,0.5,1,{UNCOND})") from None
        if text in out:
            raise BenchError(f"guidance repeats {text}; give each value once")
        out.append(text)
    return out


def check_classes(classes: str, k: int, model: str) -> None:
    """`classes`: 'uniform', or one class in 0..K-1 of the conditional model (compare and sample)."""
    if classes != "uniform" and (not classes.isdigit() or not 0 <= int(classes) < k):
        raise BenchError(f"classes must be 'uniform' or one class in 0..{k - 1} of the conditional {model},"
                         f" got {classes!r}")


def _seeds(values: list[int]) -> list[int]:
    """A seeds axis: distinct seeds in range, in the order given."""
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SEED:
            raise BenchError(f"seeds must be integers in 0..{MAX_SEED}, got {v!r}")
    if len(set(values)) != len(values):
        raise BenchError(f"seeds repeat a value ({', '.join(map(str, values))}); give each training seed once")
    return list(values)


def resolve_compare_spec(*, suite: str | None = None, methods_: list[str] | None = None, dataset: str | None = None,
                         steps: list[int] | None = None, nfe: list[int] | None = None,
                         models_: list[str] | None = None, num_samples: int | None = None, seed: int | None = None,
                         data_root: str = "", seeds: list[int] | None = None,
                         bootstrap: int | None = None, guidance: list[str] | None = None,
                         classes: str | None = None, precision: str | None = None,
                         compile_: bool | None = None, latent: str | None = None,
                         grids: list[str] | None = None) -> CompareSpec:
    """The suite's grid with command-line overrides; every error is raised before anything runs.

    The result is named after the suite when the grid is the suite's own, else
    `<suite>-<grid hash>`, so different grids never write into one folder."""
    if dataset is None and models_:  # run folders given as --model name their dataset
        trained_on = {cfg.data.name for cfg in pinned_runs(models_).values()}
        dataset = trained_on.pop() if len(trained_on) == 1 else None
    if suite is None:
        suite = get_dataset_info(dataset).suite if dataset else "toy"
    raw = load_suite(suite)
    spec = _build(suite, raw, names=methods_, dataset=dataset, steps=steps, nfe=nfe, models_=models_,
                  num_samples=num_samples, seed=seed, data_root=data_root, seeds=seeds, bootstrap=bootstrap,
                  guidance=guidance, classes=classes, precision=precision, compile_=compile_, latent=latent,
                  grids=grids)
    try:
        own = _build(suite, raw).grid_hash()
    except BenchError:  # the suite's own grid needs a dataset argument (the folder suite)
        own = None
    if spec.grid_hash() != own:
        spec = dataclasses.replace(spec, name=f"{spec.name}-{spec.grid_hash()[:6]}")
    configs = (spec.run_config(cell) for cell in spec.cells if not cell.run)  # a pinned run is not trained here
    for cfg in {cfg.run_id(): cfg for cfg in configs}.values():
        validate_run(cfg)  # every checkpoint the grid needs is trainable as configured, before any work
    return spec
