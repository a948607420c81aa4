"""Helpers shared by the benchmark scripts: configs, timing, memory, tables, verdicts.

Benchmarks are scripts, not tests. Each prints a table, the command that reproduces
it and one PASS/FAIL line per target; a target is always a ratio or a limit measured
in the same run, because the machine may be shared and noisy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import resource
import shlex
import socket
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from daemon.config import deep_merge

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = (
    "inbox",
    "duplicates_dir",
    "batch_dir",
    "sync_dir",
    "sorted_dir",
    "temp_dir",
    "log_dir",
)
READ_CHUNK = 1 << 20
MB = 1024 * 1024


# ------------------------------------------------------------------ configuration


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, **overrides: Any) -> Path:
    """A config.yaml in `root` with every folder under `root` and no Syncthing.

    Batching and sorting are manual unless `overrides` switch them on, so a
    benchmark decides when they run.
    """
    raw: dict[str, Any] = {
        "paths": {name: str(root / name.removesuffix("_dir")) for name in FOLDERS},
        "database": {"path": str(root / "db.sqlite")},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "batch": {"auto_create": False},
        "sort": {"auto": False},
        "syncthing": {"enabled": False},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(deep_merge(raw, overrides)))
    return path


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[TextIO]:
    """Point `sys.stderr` at `path` while a daemon sets up its log sinks.

    loguru keeps the stream object it was given, so the daemon's per-file log lines
    go on being written (their cost stays in the measurement) but not to the
    terminal.
    """
    saved = sys.stderr
    with open(path, "a", encoding="utf-8") as stream:
        sys.stderr = stream
        try:
            yield stream
        finally:
            sys.stderr = saved


# ------------------------------------------------------------------------- timing


def wait_for(
    cond: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll `cond` until it returns something truthy; RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"not reached within {timeout} s: {what or cond}")
        time.sleep(interval)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls (least disturbed by other load)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


# ------------------------------------------------------------------------- files


def read_all(path: Path) -> int:
    """Read a whole file (to bring it into the page cache); returns its size."""
    total = 0
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(READ_CHUNK):
            total += len(chunk)
    return total


def warm_cache(paths: Sequence[Path], threads: int = 2) -> int:
    """Read every file once so that later passes time CPU work, not the disk."""
    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(read_all, paths))


def bare_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def bare_sha256_pass(paths: Sequence[Path], threads: int) -> None:
    """`hashlib.file_digest` over every file with `threads` threads (the reference)."""
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(bare_sha256, paths):
            pass


def tree_files(root: Path) -> list[Path]:
    """Every regular file under `root`, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# ------------------------------------------------------------------------- memory


def self_peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(pid: int, field: str = "VmHWM") -> float | None:
    """A memory field of /proc/PID/status (VmHWM = peak RSS, VmRSS = now), in MiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return None


# ----------------------------------------------------------------------- database


def read_db(db_path: Path) -> sqlite3.Connection:
    """A read-only connection beside the daemon's own (WAL allows both)."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    conn.execute("PRAGMA query_only = 1")
    return conn


def status_counts(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM files GROUP BY status")
    return {status: count for status, count in rows}


# ------------------------------------------------------------------------ reports


@dataclass(frozen=True)
class Target:
    """One target: `measured` compared with `limit` (`at_most` or at least)."""

    name: str
    measured: float
    limit: float
    at_most: bool
    unit: str = ""
    note: str = ""

    @property
    def passed(self) -> bool:
        if self.at_most:
            return self.measured <= self.limit
        return self.measured >= self.limit

    def line(self) -> str:
        sign = "<=" if self.at_most else ">="
        verdict = "PASS" if self.passed else "FAIL"
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{verdict}  {self.name}: {self.measured:.2f}{self.unit} "
            f"(target {sign} {self.limit:g}{self.unit}){note}"
        )


Row = tuple[str, str, str]


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n{title}")
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>{vwidth}}  {note}".rstrip())


def print_verdicts(targets: Sequence[Target]) -> bool:
    """One PASS/FAIL line per target; True when every target passed."""
    print()
    for target in targets:
        print(target.line())
    return all(t.passed for t in targets)


def machine() -> str:
    """nproc, Python, kernel and load: what a reader needs to judge the figures."""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"nproc={os.cpu_count()} python={platform.python_version()} "
        f"kernel={platform.release()} loadavg=({load})"
    )


def reproduce(script: str, argv: Sequence[str]) -> str:
    """The exact command line that reproduces this run, from the project root."""
    parts = [".venv/bin/python", script, *argv]
    return f"cd {ROOT} && " + " ".join(shlex.quote(p) for p in parts)
