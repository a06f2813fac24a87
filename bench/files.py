"""Files written so that a crash never leaves half of one: atomic writes, a writability check, content hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from bench.errors import BenchError


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file (checkpoints, metric weights, sample files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a mix."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see the old or the new content, never a mix."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_writable(path: Path) -> None:
    """Fail before any work if `path` cannot be created and written (probed with a temporary
    folder in its nearest existing parent, removed again, so nothing is left behind)."""
    path = Path(path)
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise BenchError(f"cannot write to {path}: {probe} is not a folder; choose another output folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".bench-write-test-", dir=probe))
    except OSError as e:
        raise BenchError(f"cannot write to {path}: {probe} is not writable ({e.strerror}); choose another output"
                         " folder") from None


def safe_name(label: str) -> str:
    """A row label (or any name) as a file-name part: results/<suite>/samples/<safe_name(label)>.npz."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
