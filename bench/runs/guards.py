"""What stops a training run cleanly instead of letting it corrupt its folder: a signal to stop, a
launch that did not join its processes, a loss or weights gone non-finite, ranks whose weights differ.

Every decision that ends the loop is taken by all ranks together (`any_rank`), so none is left
waiting in a collective; and nothing non-finite or out of sync is ever written as a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import torch
from accelerate import Accelerator

import methods
from bench.errors import BenchError, DivergenceError
from bench.config.run import latest_checkpoint
from bench.runs.ema import EMA


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


def check_finite_loss(out: dict[str, torch.Tensor], phase: str, step: int, run_dir: Path,
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


def check_ranks_agree(accelerator: Accelerator, model: methods.Model, step: int) -> None:
    """Every rank must hold the same weights after a step (DDP averaged every gradient); a parameter
    whose gradient was not synchronised makes them drift apart, and that is an error, not a checkpoint."""
    if accelerator.num_processes == 1:
        return
    sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(accelerator.device)
    gathered = accelerator.gather(sums[None]).cpu()
    if not torch.allclose(gathered, gathered[:1].expand_as(gathered), rtol=1e-6, atol=1e-9):
        names = [n for n, _ in model.named_parameters()]
        bad = names[int((gathered - gathered[:1]).abs().amax(0).argmax())]
        raise BenchError(f"the processes' weights differ at step {step} ({bad}): a gradient was not synchronised"
                         " across processes; this is a bug, please report it")


def check_finite_weights(model: methods.Model, ema: EMA, step: int, run_dir: Path) -> None:
    """A step can leave the weights non-finite while its loss was finite (an update that overflows):
    such weights are never saved, so the latest checkpoint is always a good one."""
    bad = next((name for name, t in [*model.state_dict().items(), *ema.weights().items()]
                if t.is_floating_point() and not bool(torch.isfinite(t).all())), None)
    if bad is not None:
        ckpt = latest_checkpoint(run_dir)
        kept = f"the last good checkpoint is {ckpt.name}" if ckpt else "no checkpoint was written yet"
        raise DivergenceError(f"training diverged at step {step}: the weights ({bad}) are no longer finite though"
                              f" the loss was; {kept}; lower the learning rate or raise train.grad_clip, then --resume")
