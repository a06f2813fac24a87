"""Counting network calls (NFE) and timing samplers by one stated protocol.

NFE is measured, not declared: forward hooks on the method's `denoisers()` count
every call during sampling.

Wall-clock protocol (after the DDGAN follow-up papers): fixed noise of batch 100,
`warmup` untimed runs, then `repeats` timed runs, each bracketed by device
synchronisation on GPU; mean and std in ms per batch of 100. One network forward at
the same batch (captured from the sampler's own first call) is timed the same way,
so `sampler_efficiency = nfe * forward_ms / sample_ms` shows the share of sampling
time spent in the network (1.0 = no sampler overhead). Slow samplers on slow devices
are capped by `max_seconds`: fewer runs (never fewer than 1 warm-up and 3 timed), and
the counts actually used are recorded with the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn


@contextlib.contextmanager
def count_calls(modules: list[nn.Module]):
    """Yields a dict whose 'calls' counts forward calls of any of `modules`."""
    counter = {"calls": 0}

    def hook(module, args, output):
        counter["calls"] += 1

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture_first_call(module: nn.Module):
    """Records (args, kwargs) of the first forward call of `module`."""
    seen: dict[str, Any] = {}

    def hook(mod, args, kwargs):
        if not seen:
            seen["args"] = tuple(a.clone() if torch.is_tensor(a) else a for a in args)
            seen["kwargs"] = {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()}

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


@dataclasses.dataclass(frozen=True)
class TimingSpec:
    batch: int = 100
    warmup: int = 10
    repeats: int = 20
    max_seconds: float = 30.0  # per measured callable; 0 = no cap


@dataclasses.dataclass(frozen=True)
class Timing:
    mean_ms: float
    std_ms: float
    warmup: int
    repeats: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, spec: TimingSpec) -> Timing:
    """Time `fn` by the protocol above."""
    _sync(device)
    t0 = time.perf_counter()
    fn()  # first warm-up run, also a cost estimate
    _sync(device)
    first = time.perf_counter() - t0
    warmup, repeats = spec.warmup, spec.repeats
    if spec.max_seconds and first * (warmup + repeats) > spec.max_seconds:
        runs = int(spec.max_seconds / max(first, 1e-9))
        warmup = max(1, min(warmup, runs // 4))
        repeats = max(3, runs - warmup)
    for _ in range(warmup - 1):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return Timing(statistics.fmean(times), statistics.stdev(times) if len(times) > 1 else 0.0, warmup, repeats)


def time_sampler(sampler, denoisers: list[nn.Module], shape: tuple[int, ...], device: torch.device,
                 spec: TimingSpec, seed: int = 0) -> tuple[Timing, Timing]:
    """(sampler timing, one-forward timing), both at batch `spec.batch`, fixed noise."""
    noise = torch.randn(spec.batch, *shape, generator=torch.Generator().manual_seed(seed)).to(device)
    gen = torch.Generator(device=device)

    def run():
        gen.manual_seed(seed)
        return sampler(noise, generator=gen)

    with capture_first_call(denoisers[0]) as call:
        run()
    sample = time_call(run, device, spec)
    net = denoisers[0]
    with torch.no_grad():
        forward = time_call(lambda: net(*call["args"], **call["kwargs"]), device,
                            dataclasses.replace(spec, repeats=max(spec.repeats, 50)))
    return sample, forward
