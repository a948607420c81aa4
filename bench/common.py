"""Helpers shared by the benchmark scripts: configs, timing, memory, tables, verdicts.

Benchmarks are scripts, not tests. Each prints a table, the command that reproduces
it and one PASS/FAIL line per target; a target is always a ratio or a limit measured
in the same run, because the machine may be shared and noisy.
"""

from __future__ import annotations

import contextlib
import cProfile
import hashlib
import json
import os
import platform
import pstats
import resource
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from bench.corpus import CorpusInfo, generate
from daemon.config import deep_merge
from pipeline.context import FOLDERS

ROOT = Path(__file__).resolve().parents[1]
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
def stderr_to(stream: TextIO) -> Iterator[None]:
    """Point `sys.stderr` at `stream` while a daemon sets up its log sinks.

    loguru keeps the stream object it was given, so the daemon's per-file log lines
    go on being written (their cost stays in the measurement) but not to the
    terminal. Keep `stream` open until the daemon's sinks are removed.
    """
    saved = sys.stderr
    sys.stderr = stream
    try:
        yield
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


def self_cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


# ---------------------------------------------------------------------- profiling


class ThreadProfiler:
    """cProfile in every thread started after `start()` (plus the calling thread).

    cProfile sees one thread only; the daemon's work runs on its stage, writer and
    watcher threads, so each new thread gets its own profile and `stats()` merges
    them. The clock is each thread's CPU time (`time.thread_time`), so blocking
    waits cost nothing and the totals add up to the process's CPU time.
    """

    def __init__(self) -> None:
        self._profiles: list[cProfile.Profile] = []
        self._main = cProfile.Profile(time.thread_time)

    def _hook(self, frame: Any, event: str, arg: Any) -> None:
        # Runs once, as the first profile event of a new thread: hand over to cProfile.
        profile = cProfile.Profile(time.thread_time)
        self._profiles.append(profile)
        profile.enable()

    def start(self) -> None:
        threading.setprofile(self._hook)
        self._main.enable()

    def stop(self) -> pstats.Stats:
        self._main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
        stats = pstats.Stats(self._main)
        for profile in self._profiles:
            with contextlib.suppress(TypeError):  # a thread that never ran code
                stats.add(profile)
        return stats


def print_profile(stats: pstats.Stats, path: Path | None, lines: int = 30) -> None:
    """Top functions by own time and by cumulative time; the raw stats to `path`."""
    if path is not None:
        stats.dump_stats(str(path))
        print(f"\nprofile written to {path} (python -m pstats {path})")
    stats.sort_stats("tottime").print_stats(lines)
    stats.sort_stats("cumulative").print_stats(lines)


# ------------------------------------------------------------------------ corpora


def info_from_json(text: str, dest: Path) -> CorpusInfo:
    """A CorpusInfo from `CorpusInfo.to_json()`, its paths rebased onto `dest`."""
    doc = json.loads(text)
    info = CorpusInfo(dest=dest, seconds=float(doc.get("seconds", 0.0)))
    info.originals = [dest / p for p in doc["originals_list"]]
    info.exact_copies = [(dest / c, dest / o) for c, o in doc["exact_copies_list"]]
    info.resized_copies = [(dest / c, dest / o) for c, o in doc["resized_copies_list"]]
    info.big = [dest / p for p in doc["big_list"]]
    info.videos = [dest / p for p in doc.get("videos_list", [])]
    return info


def link_tree(src: Path, dst: Path) -> None:
    """Copy the tree `src` to `dst` as hard links (instant; a plain copy across
    filesystems). The benchmarks only move and read files, never modify them."""
    try:
        shutil.copytree(src, dst, copy_function=os.link)
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)


def cached_corpus(cache: Path | None, dest: Path, **kwargs: Any) -> CorpusInfo:
    """Generate a corpus into `dest`, or hard-link a cached one (`cache`) there.

    With `cache`, the corpus is generated once into `cache/files` (its paths in
    `cache/corpus.json`) and reused while the generation arguments are the same.
    """
    if cache is None:
        return generate(dest, **kwargs)
    manifest, files = cache / "corpus.json", cache / "files"
    wanted = json.dumps(kwargs, sort_keys=True, default=str)
    if not (manifest.exists() and (cache / "args.json").read_text() == wanted):
        shutil.rmtree(files, ignore_errors=True)
        manifest.unlink(missing_ok=True)
        info = generate(files, **kwargs)
        manifest.write_text(info.to_json())
        (cache / "args.json").write_text(wanted)
    dest.parent.mkdir(parents=True, exist_ok=True)
    link_tree(files, dest)
    return info_from_json(manifest.read_text(), dest)


# ------------------------------------------------------------------ thread usage


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each live Python thread, by thread name.

    Read from /proc/self/task/TID/stat: no profiler, no overhead. Threads with the
    same name prefix before a trailing "-N" are summed ("stage-hash-0", "-1" ...).
    """
    tick = os.sysconf("SC_CLK_TCK")
    usage: dict[str, float] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except (OSError, TypeError):
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = thread.name
        head, _, tail = name.rpartition("-")
        if head and tail.isdigit():
            name = f"{head}-*"
        usage[name] = usage.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return usage


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-thread CPU used between two `thread_cpu()` snapshots, largest first."""
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return dict(sorted(delta.items(), key=lambda kv: -kv[1]))


class BusyMeter:
    """Wall time spent inside a wrapped callable (e.g. the database writer's group)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.calls = 0
        self.items = 0
        self.samples: list[float] = []  # each call's wall time, in call order
        self._lock = threading.Lock()

    def wrap(
        self, fn: Callable[..., Any], count: Callable[..., int] | None = None
    ) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                with self._lock:
                    self.seconds += spent
                    self.calls += 1
                    self.samples.append(spent)
                    self.items += count(*args, **kwargs) if count else 1

        return timed


def run_in_workdir(
    script: str,
    workdir: Path | None,
    body: Callable[[Path], bool],
    argv: Sequence[str] | None,
) -> bool:
    """Run a benchmark in `workdir` (kept) or a temp folder (removed); print context."""
    print(machine())
    root = workdir or Path(tempfile.mkdtemp(prefix="bench-"))
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise SystemExit(f"--workdir {root} must be empty")
    try:
        ok = body(root)
    finally:
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"machine after: {machine()}")
    used = sys.argv[1:] if argv is None else list(argv)
    print(f"reproduce: {reproduce(script, used)}")
    return ok


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float) -> None:
    """SIGTERM a daemon we started, SIGKILL it after `timeout` s; nothing if it is gone."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
