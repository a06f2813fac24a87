"""Sample files: what `bench sample` writes and `bench evaluate` reads.

A sample file is an .npz holding one array named `samples`:
- images: uint8, N x C x H x W (what `bench sample` writes); `bench evaluate` also takes
  N x H x W x C and N x H x W (grey). Values are the 256 pixel levels; float images must
  be quantised first (round((x + 1) * 127.5) from [-1, 1]), never saved as JPEG.
- 2-D toy data: float, N x 2.
`bench sample` also writes FILE.json beside it (run, sampler, steps, NFE, seed) so that
`bench evaluate` can fill the identity columns of its results row.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

LAYOUTS = "N x C x H x W, N x H x W x C or N x H x W"
MAX_SAMPLE_BYTES = 4 * 2**30  # 4 GiB: 50,000 CIFAR-10 images are 150 MB, 1,000,000 toy points 16 MB


def write_samples(path: Path, x: torch.Tensor, meta: dict, labels: torch.Tensor | None = None) -> None:
    """samples (and a conditional model's requested `labels`) -> path (.npz) and meta -> path with .json,
    each written atomically."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
    arrays = {"samples": x.numpy(), **({"labels": labels.numpy()} if labels is not None else {})}
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmp = side.with_name(f".{side.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    os.replace(tmp, side)


def read_meta(path: Path) -> dict:
    """The .json written beside a sample file by `bench sample`, or {} when there is none."""
    side = Path(path).with_suffix(".json")
    try:
        meta = json.loads(side.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _load_array(path: Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"sample file {path} does not exist")
    try:
        f = np.load(path, allow_pickle=False)
        if isinstance(f, np.ndarray):
            raise BenchError(f"{path} is a .npy array, not an .npz file; save it with numpy.savez(FILE, samples=x)")
        with f:
            if "samples" not in f.files:
                raise BenchError(f"{path} has no array named 'samples' (found: {', '.join(f.files) or 'none'});"
                                 " save it with numpy.savez(FILE, samples=x)")
            _check_header(f.zip, path)
            return f["samples"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise BenchError(f"{path} is not a readable .npz file ({type(e).__name__})") from None


def _check_header(archive: zipfile.ZipFile, path: Path) -> None:
    """Refuse, before reading, an array whose header declares more than MAX_SAMPLE_BYTES (or no valid
    shape): a hostile or mistaken header must not become a MemoryError."""
    fmt = np.lib.format
    try:
        with archive.open("samples.npy") as member:
            version = fmt.read_magic(member)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(member)
    except KeyError:
        return  # not stored as samples.npy: numpy reads (and checks) it itself
    if any(d < 0 for d in shape):
        raise BenchError(f"{path}: the samples header declares an invalid shape {shape}")
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > MAX_SAMPLE_BYTES:
        raise BenchError(f"{path}: the samples header declares shape {shape} of {dtype} ({size / 2**30:.1f} GiB);"
                         f" at most {MAX_SAMPLE_BYTES // 2**30} GiB is read: split the file")


def to_nchw(a: np.ndarray, path: Path) -> torch.Tensor:
    """A uint8 image array in any accepted layout -> uint8 tensor N x C x H x W."""
    if a.dtype != np.uint8:
        raise BenchError(f"{path}: images must be uint8 pixel levels, got {a.dtype}; quantise them first"
                         " (round((x + 1) * 127.5) from [-1, 1]; never via JPEG)")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[1] not in (1, 3) and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.ndim != 4 or a.shape[1] not in (1, 3) or a.shape[2] != a.shape[3] or len(a) == 0:
        raise BenchError(f"{path}: samples of shape {tuple(a.shape)} are not square images in layout {LAYOUTS}"
                         " with 1 or 3 channels")
    return torch.from_numpy(np.ascontiguousarray(a))


def read_samples(path: Path, *, image: bool) -> torch.Tensor:
    """Image samples as uint8 N x C x H x W, or toy samples as float32 N x 2; one-line errors otherwise."""
    a = _load_array(path)
    if image:
        return to_nchw(a, path)
    if a.ndim != 2 or a.shape[1] != 2 or not np.issubdtype(a.dtype, np.floating) or len(a) == 0:
        raise BenchError(f"{path}: 2-D toy samples must be a float array N x 2, got {a.dtype} {tuple(a.shape)}")
    bad = int((~np.isfinite(a)).any(axis=1).sum())
    if bad:
        raise BenchError(f"{path}: {bad} of {len(a)} toy samples are NaN or inf; remove them or sample again")
    return torch.from_numpy(a.astype(np.float32))
