"""Checking one library file against its row: present, same size and mtime, same hash."""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.context import Context
from pipeline.hashing import FileChanged, sha256_file
from pipeline.verify_findings import CORRUPT


class Throttle:
    """Bounds the average read rate of every thread together (bytes per second)."""

    def __init__(self, bytes_per_second: float) -> None:
        self.rate = bytes_per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, nbytes: int) -> None:
        """Wait until `nbytes` more may be read without exceeding the rate."""
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes / self.rate
        if start > now:
            time.sleep(start - now)


@dataclass(slots=True)
class Row:
    id: int
    path: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    status: str


@dataclass(slots=True)
class Check:
    """What one file's check found: ok, touched, missing, corrupt, busy."""

    row: Row
    outcome: str
    sha256: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    bytes_read: int = 0


@dataclass
class Tally:
    checked: int = 0
    missing: int = 0
    corrupt: int = 0
    moved: list[dict[str, Any]] = field(default_factory=list)
    restored: int = 0
    busy: int = 0
    bytes_read: int = 0


def hash_throttled(
    ctx: Context, path: str, size: int, throttle: Throttle
) -> tuple[str, int]:
    throttle.consume(size)
    with ctx.fs_slots:
        digest = sha256_file(Path(path))
    return digest.sha256, digest.size


def check_file(ctx: Context, row: Row, hash_all: bool, throttle: Throttle) -> Check:
    """Compare one file with its row; hashes when asked, or when only mtime moved."""
    try:
        st = os.lstat(row.path)
    except OSError:
        return Check(row, "missing")
    if not stat.S_ISREG(st.st_mode):
        return Check(row, "missing")  # replaced by a symlink, folder or FIFO
    same_size = st.st_size == row.size
    same_mtime = st.st_mtime_ns == row.mtime_ns
    must_hash = hash_all or row.status == CORRUPT or (same_size and not same_mtime)
    if same_size and same_mtime and not must_hash:
        return Check(row, "ok", size=st.st_size, mtime_ns=st.st_mtime_ns)
    if not same_size and not hash_all:
        return Check(row, "corrupt", size=st.st_size, mtime_ns=st.st_mtime_ns)
    try:
        sha, size = hash_throttled(ctx, row.path, st.st_size, throttle)
    except FileChanged:
        return Check(row, "busy")  # being written right now: next run
    except (OSError, ValueError) as exc:
        logger.bind(event="verify", file_id=row.id).warning(
            "cannot read {}: {}", row.path, exc
        )
        return Check(row, "busy")
    outcome = "ok" if sha == row.sha256 else "corrupt"
    if outcome == "ok" and not same_mtime:
        outcome = "touched"
    return Check(row, outcome, sha, size, st.st_mtime_ns, size)
