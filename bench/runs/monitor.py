"""What a training run reports while it trains: held-out evaluation, the logged values averaged over
processes, stats.jsonl, the optional tracker and the progress bar.

None of it moves the training RNG or the weights, so watching a run never changes what it trains.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import methods
from bench.config.run import RunConfig
from bench.errors import BenchError
from bench.files import atomic_write_text
from bench.runs.ema import EMA


def check_tracker(name: str) -> str | None:
    """The Accelerate tracker `train.log_with` names, checked to be installed before any work."""
    if not name:
        return None
    try:
        __import__("tensorboard")
    except ImportError:
        raise BenchError(f"train.log_with={name} needs the tensorboard package: pip install 'bench[tracking]'"
                         " (or pip install tensorboard)") from None
    return name


def truncate_stats(path: Path, step: int) -> None:
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


class HeldOut:
    """Every `train.eval_every` steps (and at the last step): the model's `eval_metrics` on a fixed
    held-out batch (`data.eval_batch`), with the EMA weights, in eval mode, from a fixed generator,
    so it is deterministic and never moves the training RNG (resume stays exact). Results are
    logged as `eval/<name>`; `seconds` accumulates the time spent, kept out of steps/s."""

    def __init__(self, model: methods.Model, data, cfg: RunConfig):
        overrides = type(model).eval_metrics is not methods.Model.eval_metrics
        self.every = cfg.train.eval_every if overrides else 0
        self.last, self.seed, self.batch = cfg.train.steps, cfg.train.seed, cfg.train.batch_size
        self.x = data.eval_batch(cfg.train.eval_samples) if self.every else None
        self.seconds = 0.0

    def __call__(self, step: int, model: methods.Model, ema: EMA) -> dict[str, float]:
        if not self.every or (step % self.every and step != self.last):
            return {}
        t0 = time.perf_counter()
        scoring = copy.deepcopy(model).eval()
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


class ProgressBar:
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
