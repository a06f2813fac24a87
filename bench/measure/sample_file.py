"""`bench sample`: a trained run sampled into an .npz file, through the sampling path of `bench compare`
(bench/measure/sampling.py), so a file and a results row of one cell hold the same samples."""

from __future__ import annotations

from pathlib import Path
from typing import Callable
import methods
from bench.config.run import read_run_config
from bench.config.values import parse_sets
from bench.config.axes import check_classes, check_runtime, sampler_options
from bench.data.images import to_uint8
from bench.config.datasets import get_dataset_info
from bench.errors import BenchError
from bench.files import check_writable
from bench.measure import runtime
from bench.measure.sampling import cell_sampler, draw_samples
from bench.results.provenance import device_name, git_sha, resolve_device
from bench.results.sample_files import write_samples
from bench.runs.folders import load_model
from bench.runs.stage import stage_of_run
from methods.grids import Grid
from methods.guidance import Guidance


def _sampler_of_run(run: Path, cfg, name: str | None, steps: int | None, sampler_opts: list[str], grid: str | None):
    """The sampler class, options, grid and steps `bench sample` was asked for on a run, each checked."""
    try:
        model_cls = methods.get_model(cfg.model_name)
    except ValueError as e:
        raise BenchError(str(e)) from None
    if not model_cls.samplable:
        raise BenchError(f"{run} is a {cfg.model_name} run, a stage rather than a generative model: sample a run trained"
                         f" in its latent space (bench train ddpm --dataset {cfg.data.name} --latent {run})")
    try:
        cls = methods.get_sampler(name or methods.samplers_for(cfg.model_name)[0])
        reason = cls.runs_on(model_cls)
        if reason:
            raise ValueError(f"{reason}; {run} holds a {cfg.model_name} run (its samplers: "
                             f"{', '.join(methods.samplers_for(cfg.model_name))})")
        options = cls.Options(**sampler_options(cls, parse_sets(sampler_opts), cls.name))
        cls.validate(options)
        grid_spec = cls.grid_of(Grid.parse(grid)) if grid else None
    except ValueError as e:
        raise BenchError(str(e)) from None
    steps = cls.default_steps(model_cls, cfg.model) if steps is None else steps
    error = cls.valid_steps(model_cls, cfg.model, options, grid_spec).error(steps)
    if error:
        raise BenchError(f"{cls.name}: {error}")
    return cls, options, grid_spec, steps


def sample_to_file(run: Path, *, out: Path, num: int, steps: int | None = None, sampler: str | None = None,
                   seed: int = 0, batch: int = 1000, sampler_opts: list[str] = (), device: str = "auto",
                   log: Callable[[str], None] = print, guidance: str | None = None, classes: str = "uniform",
                   precision: str = "fp32", compile_: bool = False, grid: str | None = None) -> Path:
    """Sample a trained run into FILE.npz (uint8 N x C x H x W images, or float N x 2 toy points) through the
    sampling path of `bench compare`: with the same seed and batch (a suite's sample_batch, 1000 by default),
    the file holds the samples the results row of that cell was measured on."""
    check_runtime(precision, compile_)
    out = Path(out)
    if out.suffix != ".npz":
        raise BenchError(f"--out must name an .npz file, got {out}")
    if num < 1 or batch < 1:
        raise BenchError(f"--num and --batch must be >= 1, got {num} and {batch}")
    cfg = read_run_config(run)
    cls, options, grid_spec, steps = _sampler_of_run(run, cfg, sampler, steps, list(sampler_opts), grid)
    dev = resolve_device(device)
    check_writable(out.parent)
    m, cfg, meta = load_model(run, device=dev)
    runtime.prepare(m.denoisers(), precision=precision, compile_=compile_, device=dev)
    stage = stage_of_run(Path(run), cfg, dev) if cfg.data.latent else None  # the file holds decoded images
    drawn = cell_sampler(m, cls.name, steps, options, guidance=sample_guidance(m, guidance, classes), grid=grid_spec,
                         stage=stage)
    image = get_dataset_info(cfg.data.name).kind == "image"
    log(f"sampling {num} with {drawn.label} from {run}")
    x, nfe, labels = draw_samples(drawn, m, n=num, seed=seed, batch=batch, device=dev,
                                  to_data=to_uint8 if image else None, require_finite=True, classes=classes)
    conditioning = {"classes": classes, **drawn.guidance.describe()} if labels is not None else {}
    write_samples(out, x, labels=labels, meta={**conditioning,
        "run_dir": str(run), "run_id": cfg.run_id(), "sampler": cls.name, "model": cfg.model_name,
        "label": drawn.label, "steps": steps, "nfe_declared": drawn.nfe, "nfe_measured": nfe, "seed": seed,
        "batch": batch, "num_samples": num, "checkpoint_step": meta["step"], "dataset": cfg.data.name,
        "layout": "N x C x H x W uint8" if image else "N x 2 float32", "shape": list(x.shape),
        "sampler_settings": drawn.settings, **runtime.describe(precision, compile_), "device": device_name(dev),
        "git_sha": git_sha()})
    return out


def sample_guidance(model, guidance: str | None, classes: str):
    """The Guidance of `bench sample` on a conditional run (w = 0 by default); errors name the option."""

    k = model.num_classes(model.cfg)
    if not k:
        if guidance is not None or classes != "uniform":
            raise BenchError(f"--guidance and --classes need a class-conditional run; this {model.name} run has no"
                             " classes (train one with --set model.num_classes=K)")
        return None
    check_classes(classes, k, model.name)
    try:
        return Guidance.parse(guidance if guidance is not None else "0")
    except ValueError as e:
        raise BenchError(f"--guidance: {e}") from None
