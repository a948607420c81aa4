"""Benchmark adoption and `verify --hash` of a library, against their floors.

    .venv/bin/python bench/adopt.py                # 2,000 JPEGs, about a minute
    .venv/bin/python bench/adopt.py --n 20000 --repeats 1

Steps, all in one run: generate the corpus (bench/corpus.py: EXIF JPEGs in dated
folders, 10 % exact copies, 5 % resized copies, three 8 MiB files) into `sorted_dir`;
read every file once (warm page cache). Then, `--repeats` rounds, each interleaving:

1. the compute floor of adoption: SHA-256 + pHash (a draft JPEG decode) of every
   file with `system.max_parallel_fs_ops` threads and nothing around it
   (`bench.ingest.hash_floor`, the same floor ingest is held to);
2. adoption: a daemon `Service` (in this process, watcher off) with a fresh database
   runs the adopt job over `sorted_dir` — walk, hash, capture dates, rows;
3. the reference for verify: a bare `hashlib.file_digest` SHA-256 pass over the same
   files with the same number of threads (`bench.common.bare_sha256_pass`);
4. `verify --hash` (unthrottled, as a manual run is) over the adopted rows; and the
   quick `verify` (size and mtime only), shown for information.

Each time is the best of the rounds. The outcome is checked: one row per file,
`DUPLICATE` exactly for the exact copies, nothing found missing or corrupt, and the
library's files unchanged (SHA-256 and mtime of each).

Targets: adoption <= 1.25x the floor; verify --hash <= 1.2x the bare SHA-256 pass.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    MB,
    Target,
    bare_sha256_pass,
    cached_corpus,
    print_table,
    print_verdicts,
    read_db,
    run_in_workdir,
    self_cpu_seconds,
    stderr_to,
    tree_files,
    warm_cache,
    write_config,
)
from bench.ingest import hash_floor  # noqa: E402

ADOPT_TARGET = 1.25
VERIFY_TARGET = 1.2


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="files in the corpus")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--big-files", type=int, default=3, help="8 MiB JPEGs")
    p.add_argument("--fs-ops", type=int, default=None, help="max_parallel_fs_ops")
    p.add_argument("--repeats", type=int, default=3, help="rounds; best of each")
    p.add_argument(
        "--corpus-cache",
        type=Path,
        help="generate the corpus once into this folder and hard-link it from there",
    )
    p.add_argument("--workdir", type=Path, help="keep everything here (else a temp)")
    return p.parse_args(argv)


def fingerprint(files: Sequence[Path]) -> dict[str, tuple[str, int]]:
    """path -> (SHA-256, mtime_ns): what adoption and verify must leave untouched."""
    out = {}
    for path in files:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        out[str(path)] = (digest, os.stat(path).st_mtime_ns)
    return out


class Daemon:
    """A `Service` in this process (watcher off), its log lines kept out of the way."""

    def __init__(self, config: Path, log: Path):
        self.config, self.log = config, log
        self.service: Any = None
        self._stream: Any = None

    def __enter__(self) -> Any:
        from daemon.config import load
        from daemon.service import Service

        self._stream = open(self.log, "a", encoding="utf-8")
        with stderr_to(self._stream):
            self.service = Service(load(self.config, environ={}))
            self.service.start()
        return self.service

    def __exit__(self, *exc: object) -> None:
        from loguru import logger

        self.service.stop()
        logger.remove()  # its sinks hold the redirected stream
        self._stream.close()


def timed(fn: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds of this process, result) of `fn()`."""
    cpu, started = self_cpu_seconds(), time.perf_counter()
    value = fn()
    return time.perf_counter() - started, self_cpu_seconds() - cpu, value


def run_job(svc: Any, kind: str, fn: Any) -> dict[str, Any]:
    from pipeline.models import Job, JobStatus

    job = svc.jobs.run_inline(kind, fn)
    if job.status != JobStatus.DONE:
        raise RuntimeError(f"{kind} failed: {job.message}")
    return json.loads(Job.get_by_id(job.id).result)


def quiet(svc: Any) -> None:
    """Checkpoint the WAL now, so the writer's idle checkpoint does not land in a
    timed pass."""
    conn = sqlite3.connect(svc.settings.database.path, timeout=30)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()


def one_round(root: Path, k: int, workers: int, files: list[Path]) -> dict[str, Any]:
    """One round; odd rounds run each pair in the other order (A B, then B A), so a
    load that drifts during the round does not favour one side."""
    from pipeline import adopt, verify

    config = write_config(
        root,
        database={"path": str(root / f"db-{k}.sqlite")},
        watcher={"enabled": False},
        system={"max_parallel_fs_ops": workers},
        logging={"level": "WARNING"},
    )
    out: dict[str, Any] = {}

    def floor() -> None:
        out["floor"], out["floor_cpu"], _ = timed(lambda: hash_floor(files, workers))

    def bare() -> None:
        out["bare"], out["bare_cpu"], _ = timed(
            lambda: bare_sha256_pass(files, workers)
        )

    with Daemon(config, root / "daemon-stderr.log") as svc:

        def adopted() -> None:
            out["adopt"], out["adopt_cpu"], out["adopt_result"] = timed(
                lambda: run_job(svc, "adopt", lambda h: adopt.adopt_job(svc.ctx, h, []))
            )
            quiet(svc)

        def hashed() -> None:
            out["verify_hash"], out["verify_hash_cpu"], out["verify_result"] = timed(
                lambda: run_job(
                    svc,
                    "verify",
                    lambda h: verify.verify_job(svc.ctx, h, hash_all=True),
                )
            )
            quiet(svc)

        first, second = (floor, adopted) if k % 2 == 0 else (adopted, floor)
        first()
        second()
        first, second = (bare, hashed) if k % 2 == 0 else (hashed, bare)
        first()
        second()
        out["verify_quick"], _, _ = timed(
            lambda: run_job(svc, "verify", lambda h: verify.verify_job(svc.ctx, h))
        )
        out["db"] = Path(svc.settings.database.path)
    return out


def check(
    info: Any, best: dict[str, Any], files: list[Path], before: dict[str, Any]
) -> list[str]:
    """Problems with the outcome (empty when everything is as the corpus says)."""
    problems = []
    conn = read_db(best["db"])
    counts = dict(
        conn.execute(
            "SELECT status, count(*) FROM files WHERE source = 'adopted' GROUP BY status"
        )
    )
    conn.close()
    if sum(counts.values()) != len(files):
        problems.append(f"{sum(counts.values())} rows for {len(files)} files")
    if counts.get("DUPLICATE", 0) != len(info.exact_copies):
        problems.append(
            f"{counts.get('DUPLICATE', 0)} DUPLICATE, "
            f"expected {len(info.exact_copies)} exact copies"
        )
    found = best["verify_result"]
    if found["findings"] or found["new_missing"] or found["new_corrupt"]:
        problems.append(f"verify found problems: {found['message']}")
    if fingerprint(files) != before:
        problems.append("the library's files changed (SHA-256 or mtime)")
    return problems


def run(args: argparse.Namespace, root: Path) -> bool:
    from daemon.config import Settings

    library = root / "sorted"
    print(f"generating {args.n} files in {library} ...", flush=True)
    info = cached_corpus(
        args.corpus_cache,
        library / "photos",
        n=args.n,
        seed=args.seed,
        big_files=args.big_files,
    )
    files = tree_files(library)
    total_bytes = sum(p.stat().st_size for p in files)
    print(f"  {len(files)} files, {total_bytes / MB:.0f} MB")
    workers = args.fs_ops or Settings().system.max_parallel_fs_ops
    warm_cache(files)
    before = fingerprint(files)

    rounds = [one_round(root, k, workers, files) for k in range(args.repeats)]

    def best(key: str) -> float:
        return min(r[key] for r in rounds)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    winner = min(rounds, key=lambda r: r["adopt"])
    floor, adopted, bare = best("floor"), best("adopt"), best("bare")
    hashed, quick = best("verify_hash"), best("verify_quick")
    report = winner["adopt_result"]["roots"][0]
    mb = total_bytes / MB
    rows = [
        ("corpus", f"{len(files)} files", f"{mb:.0f} MB in sorted_dir"),
        ("threads", str(workers), "system.max_parallel_fs_ops, every pass"),
        (
            "floor: SHA-256 + pHash",
            f"{floor:.2f} s",
            f"bench.ingest.hash_floor (draft JPEG decode), no daemon; "
            f"CPU {best('floor_cpu'):.2f} s",
        ),
        (
            "adoption",
            f"{adopted:.2f} s",
            f"{len(files) / adopted:.0f} files/s, {mb / adopted:.0f} MB/s; "
            f"CPU {best('adopt_cpu'):.2f} s; {report['recorded']} rows, "
            f"{report['duplicate_count']} DUPLICATE",
        ),
        (
            "adoption / floor",
            f"{adopted / floor:.2f}x",
            f"median {median('adopt') / median('floor'):.2f}x; CPU "
            f"{best('adopt_cpu') / best('floor_cpu'):.2f}x",
        ),
        (
            "bare SHA-256 pass",
            f"{bare:.2f} s",
            f"hashlib.file_digest, same threads; CPU {best('bare_cpu'):.2f} s",
        ),
        (
            "verify --hash",
            f"{hashed:.2f} s",
            f"{mb / hashed:.0f} MB/s, unthrottled (manual run); "
            f"CPU {best('verify_hash_cpu'):.2f} s",
        ),
        (
            "verify --hash / bare",
            f"{hashed / bare:.2f}x",
            f"median {median('verify_hash') / median('bare'):.2f}x; CPU "
            f"{best('verify_hash_cpu') / best('bare_cpu'):.2f}x",
        ),
        (
            "verify (size + mtime)",
            f"{quick:.2f} s",
            f"{len(files) / quick:.0f} files/s",
        ),
        ("rounds", str(len(rounds)), "best (and median) of each, A-B / B-A order"),
    ]
    print_table("Adoption and verify", rows)
    problems = check(info, winner, files, before)
    for problem in problems:
        print(f"OUTCOME MISMATCH: {problem}")
    targets = [
        Target("adoption / compute floor", adopted / floor, ADOPT_TARGET, True, "x"),
        Target("verify --hash / bare SHA-256", hashed / bare, VERIFY_TARGET, True, "x"),
        Target("outcome mismatches", float(len(problems)), 0, True),
    ]
    return print_verdicts(targets)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    ok = run_in_workdir("bench/adopt.py", args.workdir, lambda r: run(args, r), argv)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
