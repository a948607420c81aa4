"""EXPERIMENT for bench/ingest.py: the hash stage's SHA-256 + pHash in worker processes.

Not shipped. It answers one question for issue 15: how close to the floor would ingest
come if hashing ran outside the daemon's interpreter lock, and at what memory cost.
The stage's threads stay; each hands its file to a worker process and waits.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def hash_in_child(path: str) -> tuple[Any, int | None]:
    """What `pipeline.hash_stage.hash_file` computes, in a worker process."""
    from pipeline.hashing import is_image, phash, sha256_file

    p = Path(path)
    digest = sha256_file(p)
    return digest, (phash(p) if is_image(p) and digest.size else None)


def _ready(_: int) -> int:
    return os.getpid()


class HashProcesses:
    """A forkserver pool of `n` workers with pipeline.hashing imported."""

    def __init__(self, n: int):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["pipeline.hashing"])
        self.pool = ProcessPoolExecutor(n, mp_context=context)
        list(self.pool.map(_ready, range(n * 4)))  # start workers before the timing
        self._shipped: Callable[..., Any] | None = None

    @property
    def pids(self) -> list[int]:
        """The workers now (the pool starts them as work arrives)."""
        return sorted(self.pool._processes or {})

    def install(self) -> None:
        from pipeline import hash_stage

        self._shipped = hash_stage.hash_file

        def hash_file(ctx: Any, path: Path) -> tuple[Any, int | None]:
            with ctx.fs_slots:
                return self.pool.submit(hash_in_child, str(path)).result()

        hash_stage.hash_file = hash_file  # type: ignore[assignment]

    def cpu_seconds(self) -> float:
        """User + system CPU of the workers so far."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / tick

    def peak_rss_mib(self) -> list[float]:
        """VmHWM of each worker (shared pages counted in each)."""
        peaks = []
        for pid in self.pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return peaks

    def close(self) -> None:
        from pipeline import hash_stage

        if self._shipped is not None:
            hash_stage.hash_file = self._shipped  # type: ignore[assignment]
        self.pool.shutdown()
