"""Sharded sampling and scoring under `accelerate launch` (one process: every call here is a no-op).

Samples are drawn in seed blocks (block b of a cell uses seed s * 1000003 + b whatever process draws
it), so process r draws the blocks b with b % N == r and the gathered samples are those of one
process, in block order. Features are extracted where the samples are: each process takes a
contiguous slice of the images, and the slices are gathered in order. Only the main process writes
files or logs; it alone times samplers, while the others wait.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable

import torch
from accelerate import PartialState
from accelerate.utils import gather_object

from bench.errors import BenchError


def no_accelerator() -> bool:
    """No GPU (or MPS) here: Accelerate must be told to use the CPU, or under `accelerate launch` /
    torchrun it sets up one independent process per rank instead of one gloo process group."""
    return not (torch.cuda.is_available() or (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()))


def _state():
    return PartialState(cpu=no_accelerator())


@dataclasses.dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Shard":
        """This process's place in the launch (Accelerate's state; (0, 1) without a launcher)."""
        state = _state()
        return cls(state.process_index, state.num_processes)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, block: int) -> bool:
        return block % self.world == self.rank

    def device(self, device: torch.device) -> torch.device:
        """Each process's own GPU when there are several processes on CUDA."""
        return _state().device if self.world > 1 and device.type == "cuda" else device

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, in process order (tensors travel on the CPU)."""
        if self.world == 1:
            return [obj]

        return gather_object([obj])

    def gather_blocks(self, blocks: dict[int, Any]) -> list[Any]:
        """Per-block results of every process, merged in block order."""
        merged: dict[int, Any] = {}
        for part in self.gather(blocks):
            merged.update(part)
        return [merged[b] for b in sorted(merged)]

    def raise_together(self, error: str | None) -> None:
        """An error on any process is raised by every process (none is left waiting in a collective)."""

        errors = [e for e in self.gather(error) if e]
        if errors:
            raise BenchError(errors[0])

    def map_rows(self, fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor
                 ) -> dict[str, torch.Tensor]:
        """fn over contiguous slices of x, one per process, concatenated in order: a feature extractor
        run where the samples are (each process's slice, on its device)."""
        if self.world == 1:
            return fn(x)
        with _state().split_between_processes(x) as mine:  # Accelerate's contiguous split, in process order
            out = {k: v.cpu() for k, v in fn(mine).items()} if len(mine) else None
        parts = [p for p in self.gather(out) if p is not None]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def barrier(self) -> None:
        if self.world > 1:
            _state().wait_for_everyone()

    def main_first(self):
        """A block the main process runs first (writing a cache) and the others after it (reading it)."""
        return _state().main_process_first() if self.world > 1 else contextlib.nullcontext()


SINGLE = Shard()
