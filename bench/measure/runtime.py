"""How the networks run while sampling: numeric precision and torch.compile. Both change the numbers a
row reports (bf16 the samples, compile the speed, and possibly the last bits), so both are recorded
in every row (`network_precision`, `network_compile`) and enter a grid's hash when not at their defaults.

- precision "bf16": each denoiser's forward runs under torch.autocast(bfloat16), its output cast back
  to float32, so the solver's own arithmetic (the ODE / SDE update, the schedule) stays float32, as
  diffusers pipelines do with a bf16 UNet. "fp32" leaves the networks alone.
- compile: each denoiser's forward goes through torch.compile (default mode). Forward hooks (the NFE
  counter) stay on the module, outside the compiled graph, so NFE is counted as before; compilation
  happens in the first sampled block, before the timing rounds.
"""

from __future__ import annotations

import functools

import torch

from bench.config.axes import check_runtime

def _autocast(forward, device_type: str):
    @functools.wraps(forward)
    def run(*args, **kwargs):
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
            out = forward(*args, **kwargs)
        return out.float() if torch.is_tensor(out) and out.is_floating_point() else out
    return run


def prepare(networks: list[torch.nn.Module], *, precision: str = "fp32", compile_: bool = False,
            device: torch.device | str = "cpu") -> None:
    """Set how `networks` (a model's denoisers) run, in place, for sampling only (never for training)."""
    check_runtime(precision, compile_)
    device_type = torch.device(device).type
    if precision == "fp32" and not compile_:
        return
    for net in networks:
        forward = net.forward
        if precision == "bf16":
            forward = _autocast(forward, device_type)
        if compile_:
            forward = torch.compile(forward)
        net.forward = forward


def describe(precision: str, compile_: bool) -> dict:
    """The results columns of these settings."""
    return {"network_precision": precision, "network_compile": bool(compile_)}
