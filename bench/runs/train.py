"""The one training loop, on Hugging Face Accelerate: CPU, one GPU, or many via `accelerate launch`.

Each iteration draws a batch, then for each of the method's `phases` (DDPM: "model";
DDGAN: "disc" then "gen") computes that phase's loss through the (possibly
distributed) module, back-propagates and steps that phase's optimizer. EMA copies of
the method's `ema_modules` follow every iteration; before them, the method's target networks
(`target_modules`, with their own step-dependent decay) and its `after_step` hook. Checkpoints (atomic, see
bench/checkpoint.py) hold weights, EMA, optimizers, LR schedules, RNG and data order,
so `resume=True` continues exactly where the last checkpoint left off.

A run with parents (RunConfig.parents: a reflow student's teacher, ...) trains the missing
ones first, into the same runs folder, and hands them to the method before its EMA copies
are made (`Model.attach_parents`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import signal
import time
from pathlib import Path
from typing import Callable

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import gather_object
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import methods
from bench.runs.checkpoint import latest_checkpoint, load_training_state, load_weights, save_checkpoint
from bench.files import atomic_write_text, check_writable
from bench.config.run import CADENCE_KEYS, RunConfig, TrainConfig, diff_configs, validate_run
from bench.data.load import IndexStream, check_labels, load_dataset
from bench.errors import BenchError, DivergenceError
from bench.runs.stage import autoencoder_dir, load_stage, record_stage
from bench.data.latent import LatentData
from bench.results.provenance import environment
from bench.measure.shard import Shard, no_accelerator
from bench.runs.folders import completed_step, is_complete, load_model
from bench.config.run import read_run_config, run_dir_for
from filelock import FileLock, Timeout
import os
from bench.report.plots import save_preview
from bench.measure.timing import call_sampler
from methods.guidance import condition
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


def lr_factor(cfg: TrainConfig, base_lr: float) -> Callable[[int], float]:
    """Linear warm-up, then constant, or cosine decay from base_lr to cfg.lr_min (a factor of base_lr)."""
    floor = min(cfg.lr_min / base_lr, 1.0) if base_lr > 0 else 0.0

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class EMA:
    """Exponential moving averages of named submodules (torch's AveragedModel)."""

    def __init__(self, method: methods.Model, decay: float):
        self.models = {name: AveragedModel(getattr(method, name), multi_avg_fn=get_ema_multi_avg_fn(decay),
                                           use_buffers=True) for name in method.ema_modules}

    def update(self, method: methods.Model) -> None:
        for name, avg in self.models.items():
            avg.update_parameters(getattr(method, name))

    def weights(self) -> dict[str, torch.Tensor]:
        return {f"{name}.{k}": v for name, avg in self.models.items() for k, v in avg.module.state_dict().items()}

    def counts(self) -> dict[str, torch.Tensor]:
        return {name: avg.n_averaged.cpu() for name, avg in self.models.items()}

    def load(self, weights: dict[str, torch.Tensor], counts: dict[str, torch.Tensor]) -> None:
        for name, avg in self.models.items():
            avg.module.load_state_dict({k[len(name) + 1:]: v for k, v in weights.items() if k.startswith(name + ".")})
            avg.n_averaged.copy_(counts[name])

    def apply_to(self, method: methods.Model) -> None:
        for name, avg in self.models.items():
            getattr(method, name).load_state_dict(avg.module.state_dict())


@torch.no_grad()
def update_targets(method: methods.Model, step: int) -> float | None:
    """theta- <- mu theta- + (1 - mu) theta for each of the method's target modules, with
    mu = method.target_decay(step); buffers are copied. Returns mu (None without targets)."""
    if not method.target_modules:
        return None
    mu = float(method.target_decay(step))
    for target_name, online_name in method.target_modules.items():
        target, online = getattr(method, target_name), getattr(method, online_name)
        t_params, o_params = list(target.parameters()), list(online.parameters())
        torch._foreach_lerp_(t_params, o_params, 1.0 - mu)
        for tb, ob in zip(target.buffers(), online.buffers()):
            tb.copy_(ob)
    return mu


def after_optimizer_step(method: methods.Model, step: int) -> dict[str, float]:
    """The per-iteration hooks after the optimizer steps: target networks, then `after_step`."""
    mu = update_targets(method, step)
    logs = {} if mu is None else {"target/decay": mu}
    return {**logs, **method.after_step(step)}


@contextlib.contextmanager
def stop_requested():
    """SIGINT (Ctrl-C) and SIGTERM (pre-emption) ask the loop to stop at the next iteration boundary,
    where it saves a checkpoint; a second signal aborts at once."""
    flag = {"stop": False}
    previous = {}

    def handler(signum, frame):
        flag["stop"] = True
        for sig, old in previous.items():
            signal.signal(sig, old)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: plain KeyboardInterrupt semantics
        pass
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


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


def _truncate_stats(path: Path, step: int) -> None:
    """Drop log lines newer than the resumed checkpoint (and a line cut short by a kill),
    so the curve continues from the checkpoint."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


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


def _tracker(name: str) -> str | None:
    """The Accelerate tracker `train.log_with` names, checked to be installed before any work."""
    if not name:
        return None
    try:
        __import__("tensorboard")
    except ImportError:
        raise BenchError(f"train.log_with={name} needs the tensorboard package: pip install 'bench[tracking]'"
                         " (or pip install tensorboard)") from None
    return name


def any_rank(accelerator: Accelerator, flag: bool) -> bool:
    """Whether `flag` holds on any process (one all-reduce; no communication with one process), so that a
    decision to stop is taken by every rank together and none is left waiting in a collective."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    return bool(accelerator.reduce(t, reduction="sum").item() > 0)


def check_launch(accelerator: Accelerator) -> None:
    """A launcher that started several processes which Accelerate did not join into one group (e.g.
    `accelerate launch --cpu --num_processes 2` without MPI) would train N copies into one folder."""

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1 and accelerator.num_processes != world:
        raise BenchError(f"{world} processes were launched but Accelerate joined {accelerator.num_processes}: on CPUs"
                         " launch with `accelerate launch --multi_gpu --num_processes N` (torchrun + gloo)")


def train_parents(cfg: RunConfig, runs_dir: Path, *, progress: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, methods.Model]:
    """Each parent of `cfg`, trained into `runs_dir` when missing or unfinished, loaded with its EMA
    weights on the CPU in eval mode; a parent with nothing to train (the oracle) is built from its data."""
    out = {}
    for role, parent in cfg.parents:
        parent_cls = methods.get_model(parent.method)
        if not parent_cls.trainable:  # an exact model (the oracle) is built from the data: no run folder
            try:
                out[role] = parent_cls.from_data(parent.model, load_dataset(parent.data)).eval()
            except ValueError as e:
                raise BenchError(f"{cfg.method}'s {role}: {e}") from None
            continue
        parent_dir = autoencoder_dir(cfg, runs_dir) if role == "autoencoder" else run_dir_for(parent, runs_dir)
        if (parent_dir / "config.json").exists():
            diffs = diff_configs(read_run_config(parent_dir), parent, ignore=CADENCE_KEYS | {"train.steps"})
            if diffs:
                raise BenchError(f"{parent_dir} does not hold the {role} this {cfg.method} run needs"
                                 f" ({'; '.join(diffs[:2])}); delete it to train the {role} again")
        ensure_trained(parent, parent_dir, runs_dir=runs_dir, progress=progress, log=log,
                       what=f"[parent] {cfg.method} needs its {role}: training {parent.method} -> {parent_dir}")
        method, got, _ = load_model(parent_dir)
        if got.run_id() != parent.run_id():
            raise BenchError(f"{parent_dir} does not hold the {role} this run needs"
                             f" ({'; '.join(diff_configs(got, parent)[:2])}); delete it to retrain")
        out[role] = method
    return out


def train(cfg: RunConfig, run_dir: Path, *, resume: bool = False, progress: bool = True,
          log: Callable[[str], None] = print, runs_dir: Path | None = None) -> Path:
    """Train `cfg` into `run_dir` (created); with `resume`, continue from its latest checkpoint.
    Parents are looked for (and trained) in `runs_dir`, by default the folder holding `run_dir`."""
    validate_run(cfg)
    cls = methods.get_model(cfg.method)
    if not cls.trainable:
        raise BenchError(f"{cfg.method} has nothing to train: it is built from the data (bench compare --model {cfg.method})")
    try:
        cls.check_config(cfg.model)
    except ValueError as e:
        raise BenchError(f"{cfg.method}: {e}") from None
    run_dir = Path(run_dir)
    # find_unused_parameters: a phase may leave parameters without gradients (DDGAN's generator in the
    # discriminator phase, frozen parents, target networks); DDP then still reduces the rest correctly
    tracker = _tracker(cfg.train.log_with)
    accelerator = Accelerator(mixed_precision=cfg.train.mixed_precision, cpu=no_accelerator(),
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
                              log_with=tracker, project_dir=str(run_dir / "logs") if tracker else None)
    check_launch(accelerator)
    if cfg.train.batch_size % accelerator.num_processes:
        raise BenchError(f"train.batch_size={cfg.train.batch_size} is not divisible by"
                         f" {accelerator.num_processes} processes")
    check_writable(run_dir)
    resume_from = prepare_run_dir(cfg, run_dir, resume=resume)
    accelerator.wait_for_everyone()  # every rank checked the folder before the main one writes into it
    runs_root = Path(runs_dir) if runs_dir is not None else run_dir.parent
    parents = train_parents(cfg, runs_root, progress=progress, log=log) if cfg.parents else {}
    parents.pop("autoencoder", None)  # the stage of a latent run is its data (below), not the method's parent

    # --- setup: devices, data, method, optimizers, schedules, EMA --------------------------------
    torch.manual_seed(cfg.train.seed * 1000 + accelerator.process_index)
    data = load_dataset(cfg.data)
    stage = None
    if cfg.data.latent:  # every rank sees the scaling factor the main process measured and recorded
        with accelerator.main_process_first():
            stage = load_stage(autoencoder_dir(cfg, runs_root), data, accelerator.device,
                               write=accelerator.is_main_process, for_run=run_dir if resume_from is not None else None)
        data = LatentData(data, stage)
    num_classes = cls.num_classes(cfg.model)
    check_labels(cfg.method, num_classes, data)
    stream = IndexStream(len(data), cfg.train.batch_size // accelerator.num_processes,
                         seed=cfg.train.seed * 1000 + accelerator.process_index + 1)
    try:
        method = cls(cfg.model, data.shape)
    except ValueError as e:  # a network config that cannot be built (unknown net.kind, wrong data kind)
        raise BenchError(f"{cfg.method}: {e}") from None
    if parents:
        if accelerator.is_main_process:  # config.json first: a folder holding a cache is always a run
            _write_run_files(cfg, run_dir, accelerator.device, processes=accelerator.num_processes)
        accelerator.wait_for_everyone()
        with accelerator.main_process_first():  # a parent's cache (reflow couplings) is written once, then read
            method.attach_parents(parents, run_dir=run_dir, seed=cfg.train.seed, log=log)
    groups = method.param_groups()
    phases = cls.phases_for(cfg.model)
    optimizers = {name: torch.optim.AdamW(g.params, lr=g.lr, betas=g.betas, weight_decay=g.weight_decay)
                  for name, g in groups.items()}
    schedules = {name: torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(cfg.train, groups[name].lr))
                 for name, opt in optimizers.items()}
    ema = EMA(method, cfg.train.ema_decay)
    step, elapsed = 0, 0.0
    if resume_from is not None:
        step, elapsed = _load_state(resume_from, method, optimizers, schedules, ema, stream, cfg,
                                    rank=accelerator.process_index, ranks=accelerator.num_processes, log=log)
        log(f"resuming {run_dir} from step {step}")
    if step >= cfg.train.steps:
        log(f"{run_dir} is already trained to step {step}")
        return run_dir
    if accelerator.is_main_process:
        _write_run_files(cfg, run_dir, accelerator.device, processes=accelerator.num_processes)
        _truncate_stats(run_dir / "stats.jsonl", step)
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
        _check_finite_weights(accelerator.unwrap_model(model), ema, at, run_dir)
        _check_ranks_agree(accelerator, accelerator.unwrap_model(model), at)
        ranks = gather_object([rank_state(stream)]) if accelerator.num_processes > 1 else [rank_state(stream)]
        if accelerator.is_main_process:
            _save_state(run_dir, at, accelerator.unwrap_model(model), optimizers, schedules, ema, stream, cfg,
                        data.shape, elapsed + time.perf_counter() - t_start, ranks=ranks)
        accelerator.wait_for_everyone()  # no rank runs ahead of a checkpoint it might be killed before

    # --- the loop -------------------------------------------------------------------------------
    bar = _Bar(progress and accelerator.is_main_process, cfg.train.steps, step)
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
                _check_finite(out, phase, step, run_dir, accelerator)
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
                    with open(run_dir / "stats.jsonl", "a") as f:
                        f.write(json.dumps(record) + "\n")
                if tracker:
                    accelerator.log({k: v for k, v in record.items() if k != "step"}, step=step)
                bar.update(step, record)
                t_log, step_log = now, step
                if held_out is not None:
                    held_out.seconds = 0.0
            elif evals:
                with open(run_dir / "stats.jsonl", "a") as f:
                    f.write(json.dumps({"step": step, **evals}) + "\n")
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
        _preview(accelerator.unwrap_model(model), ema, data, cfg, run_dir, accelerator.device, log)
    return run_dir


class HeldOut:
    """Every `train.eval_every` steps (and at the last step): the method's `eval_metrics` on a fixed
    held-out batch (`data.eval_batch`), with the EMA weights, in eval mode, from a fixed generator,
    so it is deterministic and never moves the training RNG (resume stays exact). Results are
    logged as `eval/<name>`; `seconds` accumulates the time spent, kept out of steps/s."""

    def __init__(self, method: methods.Model, data, cfg: RunConfig):
        overrides = type(method).eval_metrics is not methods.Model.eval_metrics
        self.every = cfg.train.eval_every if overrides else 0
        self.last, self.seed, self.batch = cfg.train.steps, cfg.train.seed, cfg.train.batch_size
        self.x = data.eval_batch(cfg.train.eval_samples) if self.every else None
        self.seconds = 0.0

    def __call__(self, step: int, method: methods.Model, ema: EMA) -> dict[str, float]:
        if not self.every or (step % self.every and step != self.last):
            return {}
        t0 = time.perf_counter()
        scoring = copy.deepcopy(method).eval()
        ema.apply_to(scoring)
        device = next(scoring.parameters()).device
        gen = torch.Generator().manual_seed(self.seed)
        totals: dict[str, float] = {}
        for i in range(0, len(self.x), self.batch):
            x = self.x[i:i + self.batch].to(device)
            for k, v in scoring.eval_metrics(x, generator=gen).items():
                totals[k] = totals.get(k, 0.0) + v * len(x)
        self.seconds += time.perf_counter() - t0
        return {f"eval/{k}": v / len(self.x) for k, v in totals.items()}


def _check_finite(out: dict[str, torch.Tensor], phase: str, step: int, run_dir: Path,
                  accelerator: Accelerator | None = None) -> None:
    """Before backward: a non-finite loss on any rank stops every rank (none waits in the gradient
    all-reduce), each with the same one-line error."""
    loss = out["loss"]
    bad = not bool(torch.isfinite(loss.detach()).all())
    if accelerator is not None and any_rank(accelerator, bad):
        value = loss.item() if bad else "finite here but not on another rank"
        where = f" (process {accelerator.process_index} of {accelerator.num_processes})" \
            if accelerator.num_processes > 1 else ""
    elif bad:
        value, where = loss.item(), ""
    else:
        return
    ckpt = latest_checkpoint(run_dir)
    kept = f"the last good checkpoint is {ckpt.name}" if ckpt else "no checkpoint was written yet"
    raise DivergenceError(f"training diverged at step {step}: the {phase} loss is {value}{where}; {kept};"
                          f" lower the learning rate or raise train.grad_clip, then --resume")


def mean_over_ranks(accelerator: Accelerator, logs: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """The logged values averaged over processes (one all-reduce), so stats.jsonl shows the global batch's
    loss, not rank 0's share of it."""
    if not logs:
        return {}
    keys = sorted(logs)
    values = torch.tensor([float(logs[k]) for k in keys], dtype=torch.float64)
    if accelerator.num_processes > 1:
        values = accelerator.reduce(values.to(accelerator.device), reduction="mean").cpu()
    return {k: float(v) for k, v in zip(keys, values)}


def rank_state(stream: IndexStream) -> dict:
    """What differs between processes and must come back on resume: the RNG and the data order."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "data_stream": stream.state_dict()}


def _check_ranks_agree(accelerator: Accelerator, method: methods.Model, step: int) -> None:
    """Every rank must hold the same weights after a step (DDP averaged every gradient); a parameter
    whose gradient was not synchronised makes them drift apart, and that is an error, not a checkpoint."""
    if accelerator.num_processes == 1:
        return
    sums = torch.stack([p.detach().double().sum() for p in method.parameters()]).to(accelerator.device)
    gathered = accelerator.gather(sums[None]).cpu()
    if not torch.allclose(gathered, gathered[:1].expand_as(gathered), rtol=1e-6, atol=1e-9):
        names = [n for n, _ in method.named_parameters()]
        bad = names[int((gathered - gathered[:1]).abs().amax(0).argmax())]
        raise BenchError(f"the processes' weights differ at step {step} ({bad}): a gradient was not synchronised"
                         " across processes; this is a bug, please report it")


def _check_finite_weights(method: methods.Model, ema: EMA, step: int, run_dir: Path) -> None:
    """A step can leave the weights non-finite while its loss was finite (an update that overflows):
    such weights are never saved, so the latest checkpoint is always a good one."""
    bad = next((name for name, t in [*method.state_dict().items(), *ema.weights().items()]
                if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        ckpt = latest_checkpoint(run_dir)
        kept = f"the last good checkpoint is {ckpt.name}" if ckpt else "no checkpoint was written yet"
        raise DivergenceError(f"training diverged at step {step}: the weights ({bad}) are no longer finite though"
                              f" the loss was; {kept}; lower the learning rate or raise train.grad_clip, then --resume")


def _save_state(run_dir, step, method, optimizers, schedules, ema, stream, cfg, data_shape, elapsed,
                ranks: list[dict] | None = None) -> None:
    """`ranks`: each process's RNG and data order (rank_state), in process order; `rng` / `data_stream`
    stay rank 0's, as single-process checkpoints hold them."""
    state = {
        "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
        "schedules": {n: s.state_dict() for n, s in schedules.items()},
        "ema_counts": ema.counts(),
        "rng": {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        "data_stream": stream.state_dict(),
        "elapsed_s": elapsed,
    }
    if ranks is not None and len(ranks) > 1:
        state["ranks"] = ranks
    meta = {"method": cfg.method, "dataset": cfg.data.name, "data_shape": list(data_shape), "run_id": cfg.run_id()}
    save_checkpoint(run_dir, step, model=method.state_dict(), ema=ema.weights(), state=state, meta=meta,
                    keep=cfg.train.keep_checkpoints)


def _load_state(ckpt, method, optimizers, schedules, ema, stream, cfg, *, rank: int = 0, ranks: int = 1,
                log: Callable[[str], None] = print) -> tuple[int, float]:
    """Weights, optimizers, schedules and EMA for every process; process `rank` gets its own RNG and data
    order back. Resuming with another process count than the checkpoint's cannot continue each rank's
    stream: every rank then starts a fresh one (seeded by rank and step), and the log says so."""
    model_state, ema_state, meta = load_weights(ckpt)
    if meta.get("method") != cfg.method or meta.get("dataset") != cfg.data.name:
        raise BenchError(f"checkpoint {ckpt} is a {meta.get('method')} run on {meta.get('dataset')}, not"
                         f" {cfg.method} on {cfg.data.name}")
    if tuple(meta.get("data_shape", ())) != tuple(method.data_shape):
        raise BenchError(f"checkpoint {ckpt} was trained on data of shape {meta.get('data_shape')}, not"
                         f" {list(method.data_shape)}")
    state = load_training_state(ckpt)
    try:
        method.load_state_dict(model_state)
        for n, o in optimizers.items():
            o.load_state_dict(state["optimizers"][n])
        for n, s in schedules.items():
            s.load_state_dict(state["schedules"][n])
        ema.load(ema_state, state["ema_counts"])
    except (RuntimeError, KeyError, ValueError) as e:
        raise BenchError(f"checkpoint {ckpt} does not fit this configuration ({str(e).splitlines()[0]});"
                         " the architecture or optimizer differs: train into another --out") from None
    per_rank = state.get("ranks") or [{"torch": state["rng"]["torch"], "cuda": state["rng"]["cuda"],
                                       "data_stream": state["data_stream"]}]
    step = int(meta["step"])
    if len(per_rank) != ranks:
        if rank == 0:
            log(f"warning: {ckpt} was written by {len(per_rank)} processes and is resumed by {ranks}: weights and"
                " optimizers continue exactly, the data order and noise of each process start afresh")
        torch.manual_seed(cfg.train.seed * 1000 + rank + 7919 * step)
        stream.generator.manual_seed(cfg.train.seed * 1000 + rank + 1 + 7919 * step)
        stream._new_epoch()
        return step, float(state["elapsed_s"])
    mine = per_rank[rank]
    torch.set_rng_state(mine["torch"])
    if mine["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(mine["cuda"])
    stream.load_state_dict(mine["data_stream"])
    return step, float(state["elapsed_s"])


def _preview(method, ema, data, cfg, run_dir, device, log) -> None:
    """preview.png: samples from the EMA weights. `train.preview_steps` picks the step count; the
    model's native sampler is used when it takes that many steps, else the first registered sampler
    of this model that does (e.g. ddim-50 for a ddpm run), so previews of slow samplers stay cheap. A
    class-conditional model previews conditional samples (w = 0) of classes 0, 1, 2, ... in turn."""

    cls = type(method)
    if not cls.samplable:
        return _preview_reconstructions(method, ema, data, cfg, run_dir, device)
    names = methods.samplers_for(cls.name)
    native = methods.get_sampler(names[0])
    steps = cfg.train.preview_steps or native.default_steps(cls, cfg.model)
    usable = [n for n in names
              if methods.get_sampler(n).valid_steps(cls, cfg.model, methods.get_sampler(n).Options()).error(steps) is None]
    if not usable:
        log(f"preview skipped: no sampler of {cls.name} takes {steps} steps")
        return
    sampling = cls(cfg.model, method.data_shape).to(device)
    sampling.load_state_dict(method.state_dict())
    ema.apply_to(sampling)
    sampler = condition(methods.get_sampler(usable[0]).build(sampling.eval(), steps, None), sampling, None)
    gen = torch.Generator().manual_seed(cfg.train.seed)
    noise = torch.randn(cfg.train.preview_samples, *data.shape, generator=gen).to(device)
    k = cls.num_classes(cfg.model)
    labels = torch.arange(len(noise)) % k if k else None
    x = data.to_data(call_sampler(sampler, noise, gen, labels).cpu())
    save_preview(x, run_dir / "preview.png", title=f"{run_dir.name}: {sampler.label}, {cfg.train.steps} steps")


def _preview_reconstructions(method, ema, data, cfg, run_dir, device) -> None:
    """A stage's preview.png (the autoencoder): test images above their reconstructions (EMA weights)."""

    scoring = copy.deepcopy(method).to(device).eval()
    ema.apply_to(scoring)
    x = data.eval_batch(max(1, cfg.train.preview_samples // 2)).to(device)
    with torch.no_grad():
        x_hat = scoring.reconstruct(x, torch.Generator().manual_seed(cfg.train.seed))
    images = data.to_data(torch.cat([x, x_hat]).cpu())
    save_preview(images, run_dir / "preview.png", title=f"{run_dir.name}: test images, then reconstructions")


class _Bar:
    """A rich progress bar with loss and steps/s (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.enabled = enabled
        if enabled:

            self.progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[info]}"))
            self.task = self.progress.add_task("train", total=total, completed=start, info="")

    def __enter__(self):
        if self.enabled:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.progress.__exit__(*exc)

    def update(self, step: int, record: dict) -> None:
        if self.enabled:
            losses = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k.endswith("/loss"))
            self.progress.update(self.task, completed=step, info=f"{losses} {record['steps_per_s']:.1f} it/s")

