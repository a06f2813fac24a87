"""The GPU campaign's results folder: a few files that can come back from a device machine whole.

The limits are those of the device tool's return path (docs/GPU.md): at most 8 files, 16 MiB each, names of
letters, digits, '.', '_' and '-', nothing in sub-folders. The campaign writes at most 7 files, so that the
temporary file of an atomic write cut short by a kill still leaves the folder within 8:

    progress.log    what ran, when, and why something was skipped (rewritten whole at each line)
    spec.json       device, versions, source fingerprint, settings, what is registered, the sample index
    timing.csv      the speed rows (part a)
    train.csv       the MNIST trainings (part b)
    samples-1.npz   uint8 sample arrays of the quality rows, one array per row, named by the row's label
    samples-2.npz   (as many as fit 15 MiB each, deflate-compressed)
    samples-3.npz

Every file is written to a temporary name in the same folder and renamed into place, so a run cut short
leaves complete files only. 10,000 MNIST samples are 7.8 MB uncompressed, so two rows always fit one file
and well-trained rows compress about fivefold (the real test set: 1.6 MB); rows are packed in the order
they are sampled, a new file is opened when a row no longer fits, and when all three are full a row keeps
only its first images that fit (in whole blocks of 100), with `num_stored` < `num_samples` in its index
entry. Nothing is ever silently dropped: every row is in spec.json's sample index with its file and count.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.files import atomic_write_bytes

MAX_FILES = 8  # what the return path takes
NPZ_FILES = 3  # samples-1.npz .. samples-3.npz; with the 4 text files 7 in all, one spare for a cut-short write
FILE_LIMIT = 15 * 2**20  # bytes per npz file (the return path takes 16 MiB)
NAME = re.compile(r"^[A-Za-z0-9._-]+$")
STORE_STEP = 100  # a row that must be cut keeps a multiple of this many images


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (deflate) of `arrays` in memory: np.load and `bench evaluate` read it as usual."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for key, a in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


class Outbox:
    """The campaign's results folder (see the module docstring); every write is atomic."""

    def __init__(self, folder: Path, *, npz_files: int = NPZ_FILES, file_limit: int = FILE_LIMIT, echo=None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.npz_files, self.file_limit, self.echo = npz_files, file_limit, echo
        self.t0 = time.perf_counter()
        self.lines: list[str] = []
        self.packs: list[dict[str, np.ndarray]] = []  # one dict of arrays per samples-N.npz

    # --- text files ---------------------------------------------------------------------------------
    def log(self, message: str) -> None:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%H:%M:%S")
        line = f"{stamp} +{time.perf_counter() - self.t0:6.1f}s {message}"
        self.lines.append(line)
        if self.echo is not None:
            self.echo(line)
        atomic_write_bytes(self.folder / "progress.log", ("\n".join(self.lines) + "\n").encode())

    def write_json(self, name: str, obj) -> None:
        atomic_write_bytes(self.folder / name, json.dumps(obj, indent=2, default=str).encode())

    def write_csv(self, name: str, rows: list[dict]) -> None:
        atomic_write_bytes(self.folder / name, pd.DataFrame(rows).to_csv(index=False).encode())

    # --- samples --------------------------------------------------------------------------------------
    def add_samples(self, key: str, x: np.ndarray) -> tuple[str, int]:
        """Store a row's uint8 samples under `key`; returns (file name, images stored: 0 when none fit)."""
        if not NAME.match(key):
            raise ValueError(f"sample key {key!r} must be letters, digits, '.', '_' or '-'")
        if self.packs and self._fits(len(self.packs) - 1, key, x):
            return self._name(len(self.packs) - 1), len(x)
        if len(self.packs) < self.npz_files:
            self.packs.append({})
            if self._fits(len(self.packs) - 1, key, x):
                return self._name(len(self.packs) - 1), len(x)
        i = len(self.packs) - 1  # every file is full: keep the first images that fit, in whole blocks
        n = len(x)
        while n >= STORE_STEP:
            n = (int(n * 0.8) // STORE_STEP) * STORE_STEP
            if n >= STORE_STEP and self._fits(i, key, x[:n]):
                return self._name(i), n
        return "", 0

    def _name(self, i: int) -> str:
        return f"samples-{i + 1}.npz"

    def _fits(self, i: int, key: str, x: np.ndarray) -> bool:
        arrays = {**self.packs[i], key: x}
        data = npz_bytes(arrays)
        if len(data) > self.file_limit:
            return False
        atomic_write_bytes(self.folder / self._name(i), data)
        self.packs[i] = arrays
        return True


def check_folder(folder: Path) -> list[str]:
    """What in `folder` the device's return path would refuse (empty: it all comes back)."""
    problems = []
    entries = sorted(Path(folder).rglob("*"))
    files = [p for p in entries if p.is_file()]
    if len(files) > MAX_FILES:
        problems.append(f"{len(files)} files, at most {MAX_FILES}")
    for p in entries:
        rel = p.relative_to(folder)
        if not all(NAME.match(part) for part in rel.parts):
            problems.append(f"{rel}: a name other than letters, digits, '.', '_', '-'")
        if p.is_file() and p.stat().st_size > 16 * 2**20:
            problems.append(f"{rel}: {p.stat().st_size} bytes, over 16 MiB")
        if len(rel.parts) > 3:
            problems.append(f"{rel}: deeper than 2 folders")
    return problems
