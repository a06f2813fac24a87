"""Sharded sampling and scoring under `accelerate launch` (one process: every call here is a no-op).

Samples are drawn in seed blocks (block b of a cell uses seed s * 1000003 + b whatever process draws
it), so process r draws the blocks b with b % N == r and the gathered samples are those of one
process, in block order. Features are extracted where the samples are: each process takes a
contiguous slice of the images, and the slices are gathered in order. Only the main process writes
files or logs; it alone times samplers, while the others wait.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch


@dataclasses.dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Shard":
        """This process's place in the launch (Accelerate's state; (0, 1) without a launcher)."""
        from accelerate import PartialState

        from bench.train import no_accelerator

        state = PartialState(cpu=no_accelerator())
        return cls(state.process_index, state.num_processes)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def owns(self, block: int) -> bool:
        return block % self.world == self.rank

    def device(self, device: torch.device) -> torch.device:
        """Each process's own GPU when there are several processes on CUDA."""
        if self.world > 1 and device.type == "cuda":
            from accelerate import PartialState

            return PartialState().device
        return device

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, in process order (tensors travel on the CPU)."""
        if self.world == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def gather_blocks(self, blocks: dict[int, Any]) -> list[Any]:
        """Per-block results of every process, merged in block order."""
        merged: dict[int, Any] = {}
        for part in self.gather(blocks):
            merged.update(part)
        return [merged[b] for b in sorted(merged)]

    def raise_together(self, error: str | None) -> None:
        """An error on any process is raised by every process (none is left waiting in a collective)."""
        from bench.errors import BenchError

        errors = [e for e in self.gather(error) if e]
        if errors:
            raise BenchError(errors[0])

    def map_rows(self, fn: Callable[[torch.Tensor], dict[str, torch.Tensor]], x: torch.Tensor
                 ) -> dict[str, torch.Tensor]:
        """fn over contiguous slices of x, one per process, concatenated in order: a feature extractor
        run where the samples are (each process's slice, on its device)."""
        if self.world == 1:
            return fn(x)
        bounds = torch.linspace(0, len(x), self.world + 1).round().long().tolist()
        mine = x[bounds[self.rank]:bounds[self.rank + 1]]
        out = {k: v.cpu() for k, v in fn(mine).items()} if len(mine) else None
        parts = [p for p in self.gather(out) if p is not None]
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def barrier(self) -> None:
        if self.world > 1:
            from accelerate import PartialState

            PartialState().wait_for_everyone()


SINGLE = Shard()
