"""A training run's whole state in and out of a checkpoint: weights, EMA, optimizers, LR schedules,
each process's RNG and data order, and the time spent, so that `resume=True` continues exactly.

The file format itself (atomic folders, checksums) is bench/runs/checkpoint.py's; this module decides
what goes in, and is also the one writer of the step-0 checkpoint a diffusers import makes.
"""

from __future__ import annotations

from typing import Callable

import torch

from bench.data.load import IndexStream
from bench.errors import BenchError
from bench.runs.checkpoint import load_training_state, load_weights, save_checkpoint


def rank_state(stream: IndexStream) -> dict:
    """What differs between processes and must come back on resume: the RNG and the data order."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "data_stream": stream.state_dict()}


def save_state(run_dir, step, model, optimizers, schedules, ema, stream, cfg, data_shape, elapsed,
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
    meta = {"method": cfg.model_name, "dataset": cfg.data.name, "data_shape": list(data_shape), "run_id": cfg.run_id()}
    save_checkpoint(run_dir, step, model=model.state_dict(), ema=ema.weights(), state=state, meta=meta,
                    keep=cfg.train.keep_checkpoints)


def load_state(ckpt, model, optimizers, schedules, ema, stream, cfg, *, rank: int = 0, ranks: int = 1,
               log: Callable[[str], None] = print) -> tuple[int, float]:
    """Weights, optimizers, schedules and EMA for every process; process `rank` gets its own RNG and data
    order back. Resuming with another process count than the checkpoint's cannot continue each rank's
    stream: every rank then starts a fresh one (seeded by rank and step), and the log says so."""
    model_state, ema_state, meta = load_weights(ckpt)
    if meta.get("method") != cfg.model_name or meta.get("dataset") != cfg.data.name:
        raise BenchError(f"checkpoint {ckpt} is a {meta.get('method')} run on {meta.get('dataset')}, not"
                         f" {cfg.model_name} on {cfg.data.name}")
    if tuple(meta.get("data_shape", ())) != tuple(model.data_shape):
        raise BenchError(f"checkpoint {ckpt} was trained on data of shape {meta.get('data_shape')}, not"
                         f" {list(model.data_shape)}")
    state = load_training_state(ckpt)
    try:
        model.load_state_dict(model_state)
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
