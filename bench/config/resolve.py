"""A CompareRequest resolved against its suite into a CompareSpec: every cell, its steps and its run config, with
every error raised before any work."""

from __future__ import annotations
import dataclasses
from pathlib import Path
from typing import Any
import methods
from bench.config.run import DataConfig, RunConfig, TrainConfig, latent_option, resolve_run_config, validate_run
from bench.config.run import read_run_config
from bench.config.values import build, qualify
from bench.config.suite_schema import MAX_BOOTSTRAP, MAX_SAMPLES, MAX_SEED
from bench.config.datasets import DATASETS, get_dataset_info
from bench.config.axes import (check_classes, check_runtime, frozen_items, grid_axis, grids_for, guidance_axis,
                               per_sampler,
                               sampler_options, seed_axis)
from bench.config.requests import CompareRequest
from bench.config.spec import Cell, CompareSpec, load_suite, suite_path
from bench.errors import BenchError
from bench.config.spec import TimingSpec
from bench.config.metric_options import MetricOptions, validate_options
from bench.config.run import latest_checkpoint
from methods.grids import Grid


def _sections(model: type) -> dict[str, type]:
    return {"model": model.Config, "data": DataConfig, "train": TrainConfig}


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
                raise BenchError(f"--model {name} has no checkpoint yet; train it"
                                 f" (bench train ... --out {name} --resume)")
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


def _wanted(sampler: type, model: type, name: str, var: dict, raw: dict, base: Any, opts: Any, *,
            steps: list[int] | None, nfe: list[int] | None, grid: Grid | None = None
            ) -> tuple[list[tuple[int, int]], bool, str]:
    """(steps, NFE budget) pairs for one sampler on one model, whether they must all be valid, and the
    flag they came from: --steps, else --nfe, else the variant's or suite's steps, then its budgets."""
    if steps:
        return [(s, 0) for s in steps], False, "--steps"
    own_steps = var.get("steps") or per_sampler(raw.get("steps", {}), var.get("method", name))
    budgets = nfe or (None if own_steps else var.get("nfe") or per_sampler(raw.get("nfe"), var.get("method", name)))
    if budgets:
        for b in budgets:
            if int(b) < 1:
                raise BenchError(f"NFE budgets must be positive integers, got {b}")
        def pick(b):
            cfg = dataclasses.replace(base, **model.steps_overrides(b)) if model.steps_are_trained else base
            return sampler.steps_for_nfe(int(b), model, cfg, opts, grid)
        return [(pick(b), int(b)) for b in budgets], False, "--nfe"
    return [(s, 0) for s in own_steps or [sampler.default_steps(model, base)]], True, "--steps"


@dataclasses.dataclass
class _Grid:
    """What every sampler of one grid shares while its cells are built: the suite, the request and the axes."""

    suite: str
    raw: dict[str, Any]
    req: CompareRequest
    dataset: str
    preset: str
    pinned: dict[str, RunConfig]
    seeds: list[int]
    guidance: list[str]
    grids: list[str]
    classes: str
    notes: list[str]
    cells: list[Cell] = dataclasses.field(default_factory=list)

    @property
    def variants(self) -> dict:
        return self.raw.get("variants", {})

    def model(self, name: str) -> type:
        """A model class by registry name, or a pinned run folder's model."""
        return methods.get_model(self.pinned[name].model_name) if name in self.pinned else _model_or_error(name)


def _grid(suite: str, raw: dict[str, Any], req: CompareRequest) -> _Grid:
    """The grid's shared settings, each checked: the request's value, else the suite's."""
    dataset = req.dataset or raw.get("dataset", "gaussians25")
    get_dataset_info(dataset)
    if req.steps is not None and any(s < 1 for s in req.steps):
        raise BenchError(f"--steps must be positive integers, got {','.join(map(str, req.steps))}")
    if req.steps and req.nfe:
        raise BenchError("give --steps or --nfe, not both: --nfe picks each sampler's steps from its NFE budget")
    seeds = seed_axis(list(raw.get("seeds", []) if req.seeds is None else req.seeds))
    pinned = pinned_runs(list(req.models or raw.get("models", [])))
    for name, cfg in pinned.items():
        if cfg.data.name != dataset:
            raise BenchError(f"--model {name} was trained on {cfg.data.name}, not {dataset};"
                             f" add --dataset {cfg.data.name}")
        if seeds:
            raise BenchError(f"--model {name} is one trained run: it cannot follow a seeds axis; drop --seeds")
    for name in raw.get("sampler", {}):
        _sampler_or_error(name, raw.get("variants", {}))
    preset = raw.get("preset") or get_dataset_info(dataset).preset
    return _Grid(suite=suite, raw=raw, req=req, dataset=dataset, preset=preset,
                 pinned=pinned, seeds=seeds, guidance=guidance_axis(raw.get("guidance", []) if req.guidance is None
                                                                    else list(req.guidance)),
                 grids=grid_axis(raw.get("grid", []) if req.grids is None else list(req.grids)),
                 classes=str(raw.get("classes", "uniform") if req.classes is None else req.classes).strip(),
                 notes=list(raw.get("notes", ())))


def _spec(g: _Grid) -> CompareSpec:
    """The CompareSpec of a grid whose cells are built: its scalar settings checked, the seeds axis applied."""
    raw, req = g.raw, g.req
    precision = raw.get("precision", "fp32") if req.precision is None else req.precision
    compile_ = bool(raw.get("compile", False)) if req.compile is None else req.compile
    check_runtime(precision, compile_)
    metrics = build(MetricOptions, raw.get("metrics", {}), "metrics.")
    validate_options(metrics)
    num_samples = raw.get("num_samples", 5000) if req.num_samples is None else req.num_samples
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise BenchError(f"--num-samples must be in 1..{MAX_SAMPLES}, got {num_samples}")
    if req.seed is not None and not 0 <= req.seed <= MAX_SEED:
        raise BenchError(f"--seed must be in 0..{MAX_SEED}, got {req.seed}")
    bootstrap = int(raw.get("bootstrap", 0) if req.bootstrap is None else req.bootstrap)
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise BenchError(f"--bootstrap must be in 0..{MAX_BOOTSTRAP} resamples (0 = no interval), got {bootstrap}")
    if g.guidance and not any(c.guidance for c in g.cells):
        raise BenchError("guidance needs a class-conditional model, and this grid has none: train one with --set"
                         " model.num_classes=K (the dataset's classes), or drop --guidance")
    cells = [dataclasses.replace(c, seed=s) if s is not None else c for s in (g.seeds or [None]) for c in g.cells]
    return CompareSpec(name=suite_path(g.suite).stem, suite=g.suite, dataset=g.dataset, preset=g.preset,
                       cells=tuple(cells), num_samples=num_samples,
                       seed=raw.get("seed", 0) if req.seed is None else req.seed,
                       sample_batch=int(raw.get("sample_batch", 1000)),
                       timing=build(TimingSpec, raw.get("timing", {}), "timing."), data_root=req.data_root,
                       bpd_images=int(raw.get("bpd_images", 10_000)), metrics=metrics, notes=tuple(g.notes),
                       seeds=tuple(g.seeds), bootstrap=bootstrap, guidance=tuple(g.guidance), classes=g.classes,
                       precision=precision, compile=compile_)


def _sampler_cells(g: _Grid, name: str) -> None:
    """The cells of one sampler (or suite variant) on each model it runs on, added to the grid."""
    var = g.variants.get(name, {})
    sampler = _sampler_or_error(var.get("method", name), g.variants)
    wanted = list(g.req.models or ([var["model"]] if "model" in var else None) or g.raw.get("models")
                  or [sampler.default_model])
    usable = [m for m in wanted if sampler.runs_on(g.model(m)) is None]
    if not usable:
        reason = sampler.runs_on(g.model(wanted[0]))
        raise BenchError(f"{name} cannot run on {', '.join(wanted)}: {reason}; drop it or name another model")
    opts = sampler_options(sampler, {**g.raw.get("sampler", {}).get(sampler.name, {}), **var.get("sampler", {})}, name)
    try:
        options = sampler.Options(**opts)
        sampler.validate(options)
    except (TypeError, ValueError) as e:
        raise BenchError(str(e) if str(e).startswith(sampler.name) else f"{name}: {e}") from None
    for model_name in usable:
        _model_cells(g, name, sampler, var, options, opts, model_name)


def _model_cells(g: _Grid, name: str, sampler: type, var: dict, options: Any, opts: dict, model_name: str) -> None:
    """The cells of one sampler on one model: its training overrides checked, then each grid of the axis."""
    model, info, pinned = g.model(model_name), get_dataset_info(g.dataset), model_name in g.pinned
    if getattr(model, "needs_images", False) and info.kind != "image":
        raise BenchError(f"model {model_name} is the ideal denoiser of a set of training images; {g.dataset} is"
                         " not an image dataset (use mnist, fashion-mnist, cifar10 or a folder)")
    if model.needs_mixture and not info.mixture:
        raise BenchError(f"model {model_name} needs an isotropic Gaussian mixture dataset"
                         f" ({', '.join(d for d, i in DATASETS.items() if i.mixture)}), not {g.dataset}")
    overrides = qualify(var.get("set", {}), _sections(model))
    if g.req.latent:  # --latent: every cell in that autoencoder's latent space
        if pinned:
            raise BenchError(f"--latent applies to models trained here; --model {model_name} is a trained run"
                             " sampled as it is (its own data.latent decides)")
        overrides = {**overrides, "data.latent": latent_option(g.req.latent)}
    if pinned and overrides:
        raise BenchError(f"{name} sets training options ({', '.join(overrides)}), but --model {model_name} is"
                         " a trained run sampled as it is; drop the variant or the run folder")
    base = g.pinned[model_name].model if pinned else _base_model(model, g.preset, g.dataset, overrides)
    conditional = model.num_classes(base) > 0
    if conditional:
        check_classes(g.classes, model.num_classes(base), model.name)
    for grid in grids_for(name, sampler, model_name, g.grids, var, g.notes):
        g.cells += _cells_on_grid(name, sampler, model, model_name, grid, var, g.raw, base, options, opts,
                                  overrides, steps=list(g.req.steps or []), nfe=list(g.req.nfe or []), notes=g.notes,
                                  pinned=g.pinned, guidance_axis=g.guidance, conditional=conditional,
                                  existing=g.cells)


def _build(suite: str, raw: dict[str, Any], req: CompareRequest) -> CompareSpec:
    """The suite's grid with the request's overrides: every sampler (or variant) named, each once."""
    g = _grid(suite, raw, req)
    for name in dict.fromkeys(list(req.samplers or []) or list(raw.get("methods", [])) + list(g.variants)):
        _sampler_cells(g, name)
    return _spec(g)


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
                        overrides=frozen_items(overrides), sampler_options=frozen_items(opts),
                        model=model.name if model_name in pinned else
                        ("" if model_name == sampler.default_model else model_name), nfe_target=budget,
                        guidance=g, run=str(Path(model_name).resolve()) if model_name in pinned else "",
                        grid=grid.text if grid is not None else "")
            if not any(dataclasses.replace(c, nfe_target=0) == dataclasses.replace(cell, nfe_target=0)
                       for c in existing + cells):  # two budgets that pick the same steps make one row
                cells.append(cell)
    return cells


def resolve_compare_spec(req: CompareRequest) -> CompareSpec:
    """The suite's grid with the request's overrides, and every cell's run config, each computed and validated
    once; every error is raised before anything runs.

    The result is named after the suite when the grid is the suite's own, else
    `<suite>-<grid hash>`, so different grids never write into one folder."""
    dataset = req.dataset
    if dataset is None and req.models:  # run folders given as --model name their dataset
        trained_on = {cfg.data.name for cfg in pinned_runs(list(req.models)).values()}
        dataset = trained_on.pop() if len(trained_on) == 1 else None
    suite = req.suite or (get_dataset_info(dataset).suite if dataset else "toy")
    raw = load_suite(suite)
    spec = _build(suite, raw, dataclasses.replace(req, suite=suite, dataset=dataset))
    try:
        own = _build(suite, raw, CompareRequest(suite=suite)).grid_hash()
    except BenchError:  # the suite's own grid needs a dataset argument (the folder suite)
        own = None
    if spec.grid_hash() != own:
        spec = dataclasses.replace(spec, name=f"{spec.name}-{spec.grid_hash()[:6]}")
    spec = dataclasses.replace(spec.with_run_configs(), command=req.command())
    for cfg in {spec.run_config(c).run_id(): spec.run_config(c) for c in spec.cells if not c.run}.values():
        validate_run(cfg)  # every checkpoint the grid needs is trainable as configured, before any work
    return spec
