"""Where a number came from: code version, library versions, device."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

from bench.errors import BenchError

LIBRARIES = ("torch", "torchvision", "diffusers", "accelerate", "torch-fidelity", "safetensors", "numpy",
             "pandas", "matplotlib")


def git_sha() -> str:
    """The commit of the bench source tree ('+dirty' with local changes), or 'unknown'."""
    repo = Path(__file__).resolve().parents[2]  # bench/results/provenance.py -> the repository root
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        # results/ and reports/ are outputs, not source: clearing them to regenerate them is not a change
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results", ":(exclude)reports"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = "not installed"
    return out


def resolve_device(device: str | torch.device) -> torch.device:
    """`--device` (auto, cpu, cuda, cuda:N) as a torch device; a clear error for anything else or
    for cuda on a machine without one."""

    if isinstance(device, torch.device):
        return device
    if device not in {"auto", "cpu", "cuda"} and not device.startswith("cuda:"):
        raise BenchError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device}: no CUDA device here; use --device cpu")
    return torch.device(device)


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def environment(device: torch.device | str) -> dict:
    return {"git_sha": git_sha(), "versions": versions(), "device": device_name(device),
            "platform": platform.platform()}


def cpu_affinity() -> str:
    """The CPUs this process may run on, as ranges ("0-1"); "unknown" where the OS does not say."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return "unknown"
    ranges, start = [], None
    for i, c in enumerate(cpus):
        if start is None:
            start = c
        if i + 1 == len(cpus) or cpus[i + 1] != c + 1:
            ranges.append(str(start) if start == c else f"{start}-{c}")
            start = None
    return ",".join(ranges)
