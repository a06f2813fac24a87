"""Counting network calls (NFE) and timing samplers by one stated protocol.

NFE is measured, not declared: forward hooks on the method's `denoisers()` count every call
during sampling, per network.

Wall-clock protocol. The timed call is the one that sampled: the same sampler object, a fixed
noise block of `batch` made by the same function as the samples' (`block_noise`), the same
generator type and device, device-synchronised on GPU. Each network's forward is captured from
the sampler's own first call to it. After `warmup` untimed rounds, `repeats` rounds are timed,
and each round times one sampler call and then, back to back, a burst of consecutive forwards of
every network (as many as the sampler makes, at most 32): the sampler and the network it calls
are measured in the same window and in the same state (a first call after a pause is slower
than the next ones), so a busy machine slows both and their ratio survives. Per round,

    efficiency_r = sum_i calls_i * forward_i,r / sample_r     (1.0 = all time in the networks)

and the row reports medians over rounds with the interquartile range (a spike in one round moves
neither). An efficiency above 1 is impossible (the sampler makes those forwards and more): the
rounds are measured once more, and if it persists the result carries a flag, which the report
shows as a measurement error, never as a result. Slow samplers on slow devices are capped by
`max_seconds`: fewer rounds (never fewer than 1 warm-up and 3 timed), and the counts used are
recorded with the result.

torch.utils.benchmark.Timer (adaptive_autorange) times one statement at a time; it cannot
interleave two, which is what makes the ratio robust, hence this small loop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from typing import Any, Callable

import torch
from torch import nn

from bench.config.spec import TimingSpec
from bench.runs.folders import call_sampler

MAX_BURST = 32  # a round times min(calls, MAX_BURST) consecutive forwards of each network, as the sampler makes them
MAX_EFFICIENCY = 1.0


@contextlib.contextmanager
def count_calls(modules: list[nn.Module], batch: int | None = None):
    """Yields a dict: 'calls' counts forward calls of any of `modules`, 'per_module' each one's, and
    'evals' network evaluations per sample: each call adds its rows / `batch` (a guided step's one
    call on 2B rows, conditional and unconditional halves, is 2 evaluations); 'calls' without a batch."""
    counter = {"calls": 0, "per_module": [0] * len(modules), "evals": 0.0}

    def hook_for(i):
        def hook(module, args, output):
            counter["calls"] += 1
            counter["per_module"][i] += 1
            rows = len(output) if batch and torch.is_tensor(output) and output.dim() else batch
            counter["evals"] += rows / batch if batch else 1
        return hook

    handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(modules)]
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


def block_noise(shape: tuple[int, ...], *, batch: int, seed: int, device: torch.device
                ) -> tuple[torch.Tensor, torch.Generator]:
    """A block's starting noise and the generator the sampler then draws from: the one function that
    both `draw_samples` and the timing use, so the timed call is the call that sampled."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=gen).to(device), gen


LABEL_STREAM = 2**40  # label draws use the block seed + this: never the stream of the block's own noise


def block_labels(num_classes: int, *, batch: int, seed: int, classes: str = "uniform") -> torch.Tensor | None:
    """The classes asked of a conditional model for one block (None for an unconditional one): uniform
    draws from the block's seed on their own stream, or one fixed class."""
    if not num_classes:
        return None
    if classes != "uniform":
        return torch.full((batch,), int(classes), dtype=torch.long)
    return torch.randint(0, num_classes, (batch,), generator=torch.Generator().manual_seed(seed + LABEL_STREAM))


@dataclasses.dataclass(frozen=True)
class Timing:
    sample_ms: float  # median over rounds, ms per batch
    sample_iqr_ms: float  # interquartile range of the same
    forward_ms: float  # median per-call network time, ms per batch (calls-weighted over the networks)
    efficiency: float  # median over rounds of sum_i calls_i * forward_i / sample
    efficiency_iqr: float
    warmup: int
    repeats: int
    attempts: int = 1  # 2 when a first efficiency above 1 was measured again
    flag: str = ""  # non-empty: the efficiency is a measurement error, and why
    sample_ref: float = float("nan")  # median over rounds of sample / reference workload (machine-speed units)
    reference_ms: float = float("nan")  # median time of the reference workload in the same rounds

    @property
    def valid(self) -> bool:
        return not self.flag


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1000.0


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


def _rounds(round_fn: Callable[[], tuple[float, float]], device: torch.device, spec: TimingSpec
            ) -> tuple[list[tuple[float, float]], int]:
    """`repeats` timed rounds of (sample_ms, network_ms) after warm-up, within `max_seconds`."""
    t0 = time.perf_counter()
    round_fn()  # first warm-up round, also a cost estimate
    first = time.perf_counter() - t0
    warmup, repeats = spec.warmup, spec.repeats
    if spec.max_seconds and first * (max(warmup, 1) + repeats) > spec.max_seconds:
        runs = int(spec.max_seconds / max(first, 1e-9))
        warmup = max(1, min(warmup, runs // 4))
        repeats = max(3, runs - warmup)
    for _ in range(max(warmup, 1) - 1):
        round_fn()
    return [round_fn() for _ in range(repeats)], max(warmup, 1)


_REFERENCE: dict[str, Callable[[], Any]] = {}


def reference_workload(device: torch.device) -> Callable[[], Any]:
    """A fixed workload timed in every round (20 forwards of a fixed 2-256-256-2 MLP at batch 100): the
    machine's speed in that round. Sampler times divided by it (`sample_ref`) cancel the drift of a
    shared machine's speed between minutes, which medians within one sampler's rounds cannot."""
    key = str(device)
    if key not in _REFERENCE:
        gen = torch.Generator().manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 256), nn.SiLU(), nn.Linear(256, 256), nn.SiLU(), nn.Linear(256, 2))
        for p in net.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
        net = net.to(device).eval()
        x = torch.randn(100, 2, generator=gen).to(device)

        def work():
            with torch.no_grad():
                for _ in range(20):
                    net(x)
        _REFERENCE[key] = work
    return _REFERENCE[key]


def measure(run: Callable[[], Any], forwards: list[tuple[Callable[[], Any], int]], device: torch.device,
            spec: TimingSpec) -> Timing:
    """Time `run` (one sampler call) interleaved with `forwards`: (one forward of a network, its calls
    per sampler call). Re-measures once when the efficiency comes out above 1, then flags it."""
    total_calls = sum(calls for _, calls in forwards)
    reference = reference_workload(device)

    def round_fn() -> tuple[float, float, float]:
        sample = _timed(run, device)
        network = 0.0
        for fwd, calls in forwards:
            burst = min(calls, MAX_BURST)
            network += calls * _timed(lambda: [fwd() for _ in range(burst)], device) / burst
        return sample, network, _timed(reference, device)

    attempts = 0
    while True:
        attempts += 1
        rounds, warmup = _rounds(round_fn, device, spec)
        samples = [s for s, _, _ in rounds]
        ratios = [n / s for s, n, _ in rounds]
        efficiency = statistics.median(ratios)
        if efficiency <= MAX_EFFICIENCY or attempts == 2:
            break
    flag = ""
    if efficiency > MAX_EFFICIENCY:
        flag = (f"timing measurement error: sampler efficiency {efficiency:.2f} > 1 in two measurements (the"
                " network forwards outlast the sampler that makes them; the machine was probably busy)")
    network_ms = statistics.median(n for _, n, _ in rounds)
    return Timing(sample_ms=statistics.median(samples), sample_iqr_ms=_iqr(samples),
                  forward_ms=network_ms / max(total_calls, 1), efficiency=efficiency, efficiency_iqr=_iqr(ratios),
                  warmup=warmup, repeats=len(rounds), attempts=attempts, flag=flag,
                  sample_ref=statistics.median(s / r for s, _, r in rounds),
                  reference_ms=statistics.median(r for _, _, r in rounds))


def time_sampler(sampler, denoisers: list[nn.Module], shape: tuple[int, ...], device: torch.device,
                 spec: TimingSpec, seed: int = 0, num_classes: int = 0, classes: str = "uniform") -> Timing:
    """The protocol above for `sampler` at batch `spec.batch`, from `block_noise(seed)` (and the block's
    labels for a conditional model)."""
    noise, gen = block_noise(shape, batch=spec.batch, seed=seed, device=device)
    labels = block_labels(num_classes, batch=spec.batch, seed=seed, classes=classes)

    def run():
        gen.manual_seed(seed)
        return call_sampler(sampler, noise, gen, labels)

    with contextlib.ExitStack() as stack:
        calls = [stack.enter_context(capture_first_call(net)) for net in denoisers]
        counter = stack.enter_context(count_calls(denoisers))
        run()
    forwards = []
    for net, call, n in zip(denoisers, calls, counter["per_module"]):
        if n:  # a network this sampler never calls costs it nothing
            forwards.append((_forward(net, call), n))
    return measure(run, forwards, device, spec)


def _forward(net: nn.Module, call: dict) -> Callable[[], Any]:
    def fwd():
        with torch.no_grad():
            return net(*call["args"], **call["kwargs"])
    return fwd


