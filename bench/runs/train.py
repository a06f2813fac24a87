"""The one training loop, on Hugging Face Accelerate: CPU, one GPU, or many via `accelerate launch`.

Each iteration draws a batch, then for each of the method's `phases` (DDPM: "model";
DDGAN: "disc" then "gen") computes that phase's loss through the (possibly
distributed) module, back-propagates and steps that phase's optimizer. EMA copies of
the method's `ema_modules` follow every iteration; before them, the method's target networks
(`target_modules`, with their own step-dependent decay) and its `after_step` hook. Checkpoints (atomic, see
bench/runs/checkpoint.py) hold weights, EMA, optimizers, LR schedules, RNG and data order (bench/runs/state.py),
so `resume=True` continues exactly where the last checkpoint left off.

A run with parents (RunConfig.parents: a reflow student's teacher, ...) trains the missing
ones first, into the same runs folder, and hands them to the method before its EMA copies
are made (`Model.attach_parents`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import gather_object
from filelock import FileLock, Timeout

import methods
from bench.config.run import CADENCE_KEYS, RunConfig, diff_configs, validate_run
from bench.config.run import read_run_config, run_dir_for
from bench.data.latent import LatentData
from bench.data.load import IndexStream, check_labels, load_dataset
from bench.errors import BenchError
from bench.files import atomic_write_text, check_writable
from bench.shard import Shard, no_accelerator
from bench.results.provenance import environment
from bench.config.run import latest_checkpoint
from bench.runs.ema import EMA, after_optimizer_step, lr_factor
from bench.runs.folders import completed_step, is_complete, load_model
from bench.runs.guards import (any_rank, check_finite_loss, check_finite_weights, check_launch, check_ranks_agree,
                               stop_requested)
from bench.runs.monitor import HeldOut, ProgressBar, check_tracker, mean_over_ranks, truncate_stats
from bench.runs.preview import preview
from bench.runs.stage import autoencoder_dir, load_stage, record_stage
from bench.runs.state import load_state, rank_state, save_state


def prepare_run_dir(cfg: RunConfig, run_dir: Path, *, resume: bool) -> Path | None:
    """Check the folder against the request; returns the checkpoint to resume from, if any."""
    run_dir = Path(run_dir)
    ckpt = latest_checkpoint(run_dir) if run_dir.exists() else None
    if (run_dir / "config.json").exists():
        diffs = diff_configs(read_run_config(run_dir), cfg, ignore=CADENCE_KEYS | {"train.steps"})
        if diffs:
            raise BenchError(f"{run_dir} holds a different run ({'; '.join(diffs[:3])}); use another --out")
        if ckpt is not None and not resume:
            raise BenchError(f"{run_dir} already has checkpoints; continue it with --resume or choose another --out")
    elif run_dir.exists() and any(p.name != LOCK_FILE for p in run_dir.iterdir()):
        raise BenchError(f"{run_dir} exists and is not a training run; choose another --out")
    return ckpt if resume else None


def _write_run_files(cfg: RunConfig, run_dir: Path, device: torch.device, processes: int = 1) -> None:
    """config.json, and env.json: code, versions, device, and the process count with the global and
    per-process batch (train.batch_size is global: each of N processes draws batch_size / N)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
    env = {**environment(device), "processes": processes, "global_batch": cfg.train.batch_size,
           "per_process_batch": cfg.train.batch_size // processes}
    atomic_write_text(run_dir / "env.json", json.dumps(env, indent=2))


LOCK_FILE = ".lock"


def ensure_trained(cfg: RunConfig, run_dir: Path, *, runs_dir: Path, progress: bool, log: Callable[[str], None],
                   what: str) -> None:
    """Train `cfg` into `run_dir` unless it is complete, resuming an unfinished run. The run folder is
    locked meanwhile (`run_dir/.lock`), so that two processes that need the same run train it once:
    the second waits, then finds it complete."""

    shard = Shard.current()
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_FILE))
    if shard.main:  # the ranks of one launch train together: one lock for all of them
        try:
            lock.acquire(timeout=1)
        except Timeout:
            log(f"waiting: another process is training {run_dir}")
            lock.acquire()
    try:
        shard.barrier()
        complete, resume = is_complete(run_dir, cfg), completed_step(run_dir) > 0
        shard.barrier()  # every rank read the folder before any rank writes to it
        if complete:
            return
        log(what + (" (resuming)" if resume else ""))
        train(cfg, run_dir, resume=resume, progress=progress, log=log, runs_dir=runs_dir)
    finally:
        if lock.is_locked:
            lock.release()


def train_parents(cfg: RunConfig, runs_dir: Path, *, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, methods.Model]:
    """Each parent of `cfg`, trained into `runs_dir` when missing or unfinished, loaded with its EMA
    weights on the CPU in eval mode; a parent with nothing to train (the oracle) is built from its data."""
    out = {}
    for role, parent in cfg.parents:
        parent_cls = methods.get_model(parent.model_name)
        if not parent_cls.trainable:  # an exact model (the oracle) is built from the data: no run folder
            try:
                out[role] = parent_cls.from_data(parent.model, load_dataset(parent.data)).eval()
            except ValueError as e:
                raise BenchError(f"{cfg.model_name}'s {role}: {e}") from None
            continue
        parent_dir = autoencoder_dir(cfg, runs_dir) if role == "autoencoder" else run_dir_for(parent, runs_dir)
        if (parent_dir / "config.json").exists():
            diffs = diff_configs(read_run_config(parent_dir), parent, ignore=CADENCE_KEYS | {"train.steps"})
            if diffs:
                raise BenchError(f"{parent_dir} does not hold the {role} this {cfg.model_name} run needs"
                                 f" ({'; '.join(diffs[:2])}); delete it to train the {role} again")
        ensure_trained(parent, parent_dir, runs_dir=runs_dir, progress=progress, log=log,
                       what=f"[parent] {cfg.model_name} needs its {role}: training {parent.model_name} -> {parent_dir}")
        model, got, _ = load_model(parent_dir)
        if got.run_id() != parent.run_id():
            raise BenchError(f"{parent_dir} does not hold the {role} this run needs"
                             f" ({'; '.join(diff_configs(got, parent)[:2])}); delete it to retrain")
        out[role] = model
    return out


def train(cfg: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, runs_dir: Path | None = None) -> Path:
    """Train `cfg` into `run_dir` (created); with `resume`, continue from its latest checkpoint.
    Parents are looked for (and trained) in `runs_dir`, by default the folder holding `run_dir`."""
    cls = _trainable(cfg)
    run_dir = Path(run_dir)
    tracker = check_tracker(cfg.train.log_with)
    accelerator = _accelerator(cfg, run_dir, tracker)
    check_writable(run_dir)
    resume_from = prepare_run_dir(cfg, run_dir, resume=resume)
    accelerator.wait_for_everyone()  # every rank checked the folder before the main one writes into it
    runs_root = Path(runs_dir) if runs_dir is not None else run_dir.parent
    parents = train_parents(cfg, runs_root, progress=progress, log=log) if cfg.parents else {}
    parents.pop("autoencoder", None)  # the stage of a latent run is its data (below), not the method's parent

    # --- setup: devices, data, method, optimizers, schedules, EMA --------------------------------
    torch.manual_seed(cfg.train.seed * 1000 + accelerator.process_index)
    data, stage = _training_data(cfg, accelerator, runs_root, resume_dir=run_dir if resume_from is not None else None)
    num_classes = cls.num_classes(cfg.model)
    check_labels(cfg.model_name, num_classes, data)
    stream = IndexStream(len(data), cfg.train.batch_size // accelerator.num_processes,
                         seed=cfg.train.seed * 1000 + accelerator.process_index + 1)
    try:
        method = cls(cfg.model, data.shape)
    except ValueError as e:  # a network config that cannot be built (unknown net.kind, wrong data kind)
        raise BenchError(f"{cfg.model_name}: {e}") from None
    if parents:
        if accelerator.is_main_process:  # config.json first: a folder holding a cache is always a run
            _write_run_files(cfg, run_dir, accelerator.device, processes=accelerator.num_processes)
        accelerator.wait_for_everyone()
        with accelerator.main_process_first():  # a parent's cache (reflow couplings) is written once, then read
            method.attach_parents(parents, run_dir=run_dir, seed=cfg.train.seed, log=log)
    groups, optimizers, schedules = _optimizers(method, cfg)
    phases = cls.phases_for(cfg.model)
    ema = EMA(method, cfg.train.ema_decay)
    step, elapsed = 0, 0.0
    if resume_from is not None:
        step, elapsed = load_state(resume_from, method, optimizers, schedules, ema, stream, cfg,
                                   rank=accelerator.process_index, ranks=accelerator.num_processes, log=log)
        log(f"resuming {run_dir} from step {step}")
    if step >= cfg.train.steps:
        log(f"{run_dir} is already trained to step {step}")
        return run_dir
    if accelerator.is_main_process:
        _write_run_files(cfg, run_dir, accelerator.device, processes=accelerator.num_processes)
        truncate_stats(run_dir / "stats.jsonl", step)
        if stage is not None and resume_from is None:
            record_stage(run_dir, stage)
    model, *prepared = accelerator.prepare(method, *optimizers.values())
    optimizers = dict(zip(optimizers, prepared))
    for avg in ema.models.values():
        avg.to(accelerator.device)

    held_out = HeldOut(method, data, cfg) if accelerator.is_main_process else None
    if tracker:  # hyperparameters as the tracker takes them: scalars and text
        accelerator.init_trackers(run_dir.name, config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                        for k, v in cfg.semantic_dict().items()})

    def checkpoint(at: int) -> None:
        accelerator.wait_for_everyone()
        check_finite_weights(accelerator.unwrap_model(model), ema, at, run_dir)
        check_ranks_agree(accelerator, accelerator.unwrap_model(model), at)
        ranks = gather_object([rank_state(stream)]) if accelerator.num_processes > 1 else [rank_state(stream)]
        if accelerator.is_main_process:
            save_state(run_dir, at, accelerator.unwrap_model(model), optimizers, schedules, ema, stream, cfg,
                       data.shape, elapsed + time.perf_counter() - t_start, ranks=ranks)
        accelerator.wait_for_everyone()  # no rank runs ahead of a checkpoint it might be killed before

    # --- the loop -------------------------------------------------------------------------------
    bar = ProgressBar(progress and accelerator.is_main_process, cfg.train.steps, step)
    t_start = t_log = time.perf_counter()
    step_log = step
    with stop_requested() as stop, bar:
        while step < cfg.train.steps:
            idx = stream.next()
            x0 = data.batch(idx).to(accelerator.device)
            y = data.labels(idx).to(accelerator.device) if num_classes else None  # class-conditional models only
            logs = {}
            for phase in phases:
                out = model(x0, phase=phase, step=step, y=y) if num_classes else model(x0, phase=phase, step=step)
                check_finite_loss(out, phase, step, run_dir, accelerator)
                optimizers[phase].zero_grad(set_to_none=True)
                accelerator.backward(out["loss"])
                if cfg.train.grad_clip > 0:
                    accelerator.clip_grad_norm_(groups[phase].params, cfg.train.grad_clip)
                optimizers[phase].step()
                schedules[phase].step()
                logs.update({f"{phase}/{k}": v.detach() for k, v in out.items()})
            logs.update(after_optimizer_step(accelerator.unwrap_model(model), step))
            ema.update(accelerator.unwrap_model(model))
            step += 1

            # --- held-out evaluation, logging, checkpoints, interruption --------------------------
            evals = held_out(step, accelerator.unwrap_model(model), ema) if held_out is not None else {}
            if step % cfg.train.log_every == 0 or step == cfg.train.steps:
                now = time.perf_counter()
                spent = held_out.seconds if held_out is not None else 0.0  # evaluation is not training time
                rate = (step - step_log) / max(now - t_log - spent, 1e-9)
                record = {"step": step, "elapsed_s": round(elapsed + now - t_start, 3), "steps_per_s": round(rate, 2),
                          **{f"lr/{n}": s.get_last_lr()[0] for n, s in schedules.items()},
                          **mean_over_ranks(accelerator, logs), **evals}
                if accelerator.is_main_process:
                    _append_stats(run_dir, record)
                if tracker:
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                bar.update(step, record)
                t_log, step_log = now, step
                if held_out is not None:
                    held_out.seconds = 0.0
            elif evals:
                _append_stats(run_dir, {"step": step, **evals})
            stopping = any_rank(accelerator, stop["stop"])  # a signal to one rank stops all of them, here
            if step % cfg.train.ckpt_every == 0 or step == cfg.train.steps or stopping:
                checkpoint(step)
            if stopping:
                if tracker:
                    accelerator.end_training()
                raise BenchError(f"interrupted at step {step}; checkpoint saved in {run_dir}; continue with --resume")
    if tracker:
        accelerator.end_training()
    if accelerator.is_main_process and cfg.train.preview_samples > 0:
        preview(accelerator.unwrap_model(model), ema, data, cfg, run_dir, accelerator.device, log)
    return run_dir


def _trainable(cfg: RunConfig) -> type[methods.Model]:
    """The method class of a valid `cfg` that has something to train: refused in one line before any work."""
    validate_run(cfg)
    cls = methods.get_model(cfg.model_name)
    if not cls.trainable:
        raise BenchError(f"{cfg.model_name} has nothing to train: it is built from the data (bench compare --model {cfg.model_name})")
    try:
        cls.check_config(cfg.model)
    except ValueError as e:
        raise BenchError(f"{cfg.model_name}: {e}") from None
    return cls


def _accelerator(cfg: RunConfig, run_dir: Path, tracker: str | None) -> Accelerator:
    """The run's Accelerator, checked to have joined every launched process and to split the batch evenly.
    find_unused_parameters: a phase may leave parameters without gradients (DDGAN's generator in the
    discriminator phase, frozen parents, target networks); DDP then still reduces the rest correctly."""
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=no_accelerator(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
                              log_with=tracker, project_dir=str(run_dir / "logs") if tracker else None)
    check_launch(accelerator)
    if cfg.train.batch_size % accelerator.num_processes:
        raise BenchError(f"train.batch_size={cfg.train.batch_size} is not divisible by"
                         f" {accelerator.num_processes} processes")
    return accelerator


def _training_data(cfg: RunConfig, accelerator: Accelerator, runs_root: Path, *, resume_dir: Path | None):
    """The run's dataset and, for a latent run, its autoencoder stage (else None), whose latents are the data.
    `resume_dir`: the run folder when resuming, whose recorded autoencoder the stage must match."""
    data = load_dataset(cfg.data)
    stage = None
    if cfg.data.latent:  # every rank sees the scaling factor the main process measured and recorded
        with accelerator.main_process_first():
            stage = load_stage(autoencoder_dir(cfg, runs_root), data, accelerator.device,
                               write=accelerator.is_main_process, for_run=resume_dir)
        data = LatentData(data, stage)
    return data, stage


def _optimizers(model: methods.Model, cfg: RunConfig) -> tuple[dict, dict, dict]:
    """The method's parameter groups, an AdamW for each (a phase's own lr and betas) and its LR schedule."""
    groups = model.param_groups()
    optimizers = {name: torch.optim.AdamW(g.params, lr=g.lr, betas=g.betas, weight_decay=g.weight_decay)
                  for name, g in groups.items()}
    schedules = {name: torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.train, groups[name].lr))
                 for name, opt in optimizers.items()}
    return groups, optimizers, schedules


def _append_stats(run_dir: Path, record: dict) -> None:
    """One line of stats.jsonl (truncate_stats drops lines newer than a resumed checkpoint)."""
    with open(run_dir / "stats.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
