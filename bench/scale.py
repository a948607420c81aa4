"""Benchmark a big library: READY time, read routes, intake, memory and size.

    .venv/bin/python bench/scale.py               # 1,000,000 files
    .venv/bin/python bench/scale.py --n 100000    # a quicker look

Steps, all in one run:

1. Two installations side by side: `big` and `empty`. Both databases are made by the
   daemon's own `open_database` (every migration, the counters' triggers); `big` then
   gets N `files` rows in one transaction of raw `executemany` through that schema
   (indexes and the counters' triggers made again afterwards, counters recounted, as
   a restore would): 95 % SORTED in 500 SORTED batches, 5 % DUPLICATE, 0.5 %
   flagged near-duplicates, 2 % dated by mtime, random SHA-256 and 64-bit pHashes,
   created over three years with a few thousand in the last day. No files on disk:
   nothing at start reads them (what would, e.g. `verify`, is not scheduled here).
2. READY: each daemon is started as systemd starts it (`python -m daemon run`) and
   timed from the process start to the first `/health` answer; the empty library is
   the floor (interpreter, imports, uvicorn) in the same run. The daemon's own log
   says where its start-up milliseconds went, when the near-duplicate index was
   loaded (in the background) and when the counters were checked (in the background).
3. Every read route of the OpenAPI document (path ids filled with real rows; the
   thumbnail route is left out: no image files exist) `--requests` times with one
   kept-alive httpx client after 5 warm-up requests: median and p95; the same
   requests to the empty library give each route's floor.
4. Intake: `--intake` new small distinct JPEGs renamed into each inbox (watcher on,
   settle 0.2 s), timed until every row is decided; `--rounds` rounds, each with new
   files made twice (one copy per library), alternating which library goes first,
   after one warm-up round that is not counted (the first files after a start find
   SQLite's page cache cold); ratio of the sums (and of each round), of the wall
   time and of the daemon process's CPU time (less sensitive to a busy machine).
5. Peak RSS of the big daemon (VmHWM) and the database size (with WAL).

Targets (issue 12), all with the 1,000,000-row default: READY <= 5 s; /api/dashboard
median <= 50 ms; /metrics median <= 50 ms; every read route median <= 100 ms; intake
<= 1.25x the empty library; peak RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    ROOT,
    Row,
    Target,
    print_table,
    print_verdicts,
    proc_cpu_seconds,
    proc_status_mb,
    read_db,
    run_in_workdir,
    stop_process,  # noqa: E402
    wait_for,
    write_config,
)
from daemon.config import deep_merge  # noqa: E402

DECIDED = ("UNIQUE", "DUPLICATE", "ERROR", "SKIPPED")
BATCHES = 500
SKIP_ROUTES = ("/api/files/{id}/thumbnail",)


# ------------------------------------------------------------------------ library


def stamp(t: datetime) -> str:
    return t.isoformat(" ")


def phash(rng: random.Random) -> int:
    """A random 64-bit pHash with about half its bits set, stored signed."""
    h = rng.getrandbits(64)
    return h - (1 << 64) if h >= 1 << 63 else h


def build_library(db_path: Path, n: int, seed: int) -> float:
    """N rows through the real schema (triggers included), one transaction."""
    from pipeline import stats
    from pipeline.db import open_database
    from pipeline.models import database_proxy

    open_database(db_path).close()
    database_proxy.initialize(None)
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(tzinfo=None)
    started = time.perf_counter()
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA synchronous = OFF")
    con.execute("PRAGMA cache_size = -200000")
    # Bulk load as a restore would: indexes and the counters' triggers set aside and
    # made again afterwards (CREATE INDEX sorts once instead of a random insert per
    # row); the counters are then recounted. The end state is the daemon's schema.
    later = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL AND ("
        "(type = 'index' AND tbl_name = 'files') OR"
        " (type = 'trigger' AND name LIKE 'stats_%'))"
    ).fetchall()
    with con:
        for name, sql in later:
            kind = "TRIGGER" if sql.upper().startswith("CREATE TRIGGER") else "INDEX"
            con.execute(f"DROP {kind} {name}")
        con.executemany(
            "INSERT INTO batches (id, name, status, file_count, size_bytes, progress,"
            " created_at, synced_at, sorted_at, updated_at)"
            " VALUES (?, ?, 'SORTED', ?, ?, 100, ?, ?, ?, ?)",
            [
                (b, f"batch_{b:06d}", n // BATCHES, 0, *(stamp(now),) * 4)
                for b in range(1, BATCHES + 1)
            ],
        )
        con.executemany(
            "INSERT INTO files (id, original_path, rel_path, current_path, size,"
            " mtime_ns, sha256, phash, status, duplicate_of, near_duplicate_of,"
            " near_distance, batch, capture_time, capture_source, target_path,"
            " attempts, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
            (_row(i, n, rng, now) for i in range(1, n + 1)),
        )
        for _, sql in later:
            con.execute(sql)
        stats.rebuild(con)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return time.perf_counter() - started


def _row(i: int, n: int, rng: random.Random, now: datetime) -> tuple[Any, ...]:
    recent = i > n - min(3000, n // 50)  # the last few thousand: within the day
    age = timedelta(seconds=rng.uniform(0, 86_000 if recent else 3 * 365 * 86_400))
    created = stamp(now - age)
    taken = now - age - timedelta(days=rng.uniform(0, 30))
    day = taken.strftime("%Y/%m/%d")
    name = f"IMG_{i:07d}.jpg"
    duplicate = i % 20 == 0  # 5 %
    status = "DUPLICATE" if duplicate else "SORTED"
    source = "mtime" if i % 50 == 1 else "exif"
    near = i - 1 if (not duplicate and i % 200 == 7 and i > 1) else None
    path = f"/srv/media/{'duplicates' if duplicate else 'sorted/' + day}/{name}"
    return (
        i,
        f"/srv/media/inbox/{name}",
        name,
        path,
        rng.randint(500_000, 8_000_000),
        rng.getrandbits(60),
        f"{rng.getrandbits(256):064x}",
        phash(rng),
        status,
        i - 1 if duplicate else None,
        near,
        3 if near else None,
        None if duplicate else 1 + i % BATCHES,
        None if duplicate else stamp(taken),
        None if duplicate else source,
        None if duplicate else path,
        created,
        created,
    )


def cached_library(db_path: Path, args: argparse.Namespace) -> float:
    """Build the big library, or copy it from `--library-cache` (built there once)."""
    cache = args.library_cache
    if cache is None:
        return build_library(db_path, args.n, args.seed)
    cache = cache.with_name(f"{cache.stem}-{args.n}-{args.seed}{cache.suffix}")
    if not cache.exists():
        build_s = build_library(db_path, args.n, args.seed)
        shutil.copyfile(db_path, cache)
        return build_s
    from pipeline.db import open_database
    from pipeline.models import database_proxy

    shutil.copyfile(cache, db_path)
    open_database(db_path).close()  # migrations added since the cache was made
    database_proxy.initialize(None)
    return 0.0


def overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`a.b=1` -> {"a": {"b": 1}} (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return out


# ------------------------------------------------------------------------ daemons


class Daemon:
    """`python -m daemon run -c CONFIG`, timed from process start to /health."""

    def __init__(self, root: Path, name: str, extra: dict[str, Any]):
        self.root = root / name
        self.root.mkdir()
        self.config = write_config(
            self.root, **deep_merge({"watcher": {"settle_seconds": 0.2}}, extra)
        )
        settings = _yaml(self.config)
        self.port = settings["server"]["port"]
        self.db = Path(settings["database"]["path"])
        self.inbox = Path(settings["paths"]["inbox"])
        self.log_file = Path(settings["paths"]["log_dir"]) / "media-pipeline.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_s = 0.0

    def start(self) -> None:
        import httpx

        out = open(self.root / "stderr.log", "ab")
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "-c", str(self.config)],
            stdout=out,
            stderr=out,
            cwd=ROOT,
        )
        url = f"http://127.0.0.1:{self.port}/health"

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited; see {self.root / 'stderr.log'}")
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 120, interval=0.02, what="/health")
        self.ready_s = time.perf_counter() - started

    def log(self, event: str, contains: str = "") -> dict[str, Any] | None:
        """The first JSON log record with `event` (and text), else None."""
        if not self.log_file.exists():
            return None
        for line in self.log_file.read_text().splitlines():
            record = json.loads(line)["record"]
            if record["extra"].get("event") == event and contains in record["message"]:
                return record
        return None

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        return proc_cpu_seconds(self.proc.pid) or 0.0

    def peak_rss_mb(self) -> float:
        assert self.proc is not None
        return proc_status_mb(self.proc.pid, "VmHWM") or 0.0

    def stop(self) -> None:
        stop_process(self.proc, 20)


def _yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text())


# ------------------------------------------------------------------------- routes


def read_routes(client: Any, n: int) -> list[str]:
    """Every GET path of the OpenAPI document, path ids filled with real rows."""
    doc = client.get("/openapi.json").json()
    fills = {"{id}": str(n // 2)}
    urls = []
    for path, ops in sorted(doc["paths"].items()):
        if "get" not in ops or path in SKIP_ROUTES:
            continue
        if path.startswith("/api/batches/"):
            urls.append(path.replace("{id}", str(BATCHES // 2)))
            continue
        for key, value in fills.items():
            path = path.replace(key, value)
        urls.append(path)
    urls += [
        "/api/files?limit=100&status=SORTED",
        f"/api/files?limit=100&after={n // 2}",
        f"/api/duplicates?limit=50&after={n // 2}",
    ]
    return urls


def time_routes(base: str, urls: list[str], requests: int) -> dict[str, list[float]]:
    import httpx

    out: dict[str, list[float]] = {}
    with httpx.Client(base_url=base, timeout=60) as client:
        for url in urls:
            for _ in range(5):
                client.get(url)
            samples = []
            for _ in range(requests):
                started = time.perf_counter()
                answer = client.get(url)
                samples.append((time.perf_counter() - started) * 1000)
                if answer.status_code >= 500:
                    raise RuntimeError(f"{url}: {answer.status_code} {answer.text}")
            out[url] = samples
    return out


def p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]


# ------------------------------------------------------------------------- intake


def make_jpegs(folder: Path, count: int, seed: int) -> Path:
    """`count` small distinct JPEGs (random blocks: distinct SHA-256 and pHash)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        blocks = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        img = Image.fromarray(blocks).resize((160, 120), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        (folder / f"new_{seed}_{i:04d}.jpg").write_bytes(buf.getvalue())
    return folder


def timed_intake(daemon: Daemon, staged: Path) -> float:
    """Seconds from the rename into the inbox until every new row is decided."""
    count = sum(1 for _ in staged.iterdir())
    conn = read_db(daemon.db)
    try:
        before = conn.execute("SELECT COALESCE(MAX(id), 0) FROM files").fetchone()[0]
        target = daemon.inbox / staged.name
        started = time.perf_counter()
        staged.rename(target)
        marks = ",".join("?" * len(DECIDED))

        def done() -> bool:
            row = conn.execute(
                f"SELECT COUNT(*) FROM files WHERE id > ? AND status IN ({marks})",
                (before, *DECIDED),
            ).fetchone()
            return row[0] >= count

        wait_for(done, 600, interval=0.01, what="intake decided")
        return time.perf_counter() - started
    finally:
        conn.close()


# --------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="files rows (big)")
    p.add_argument("--intake", type=int, default=300, help="new files per round")
    p.add_argument("--rounds", type=int, default=4, help="intake rounds per library")
    p.add_argument("--requests", type=int, default=40, help="timed requests/route")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--workdir", type=Path, help="keep everything here (empty dir)")
    p.add_argument(
        "--library-cache",
        type=Path,
        help="a database file: built there once (for this --n and --seed), copied after",
    )
    p.add_argument(
        "--sequential-child", choices=("big", "empty"), help=argparse.SUPPRESS
    )
    p.add_argument("--library-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument(
        "--no-sequential",
        action="store_true",
        help="skip the intake rounds with one daemon at a time",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for both daemons (experiments), e.g. dedup.near_duplicate_distance=0",
    )
    return p.parse_args(argv)


def run(args: argparse.Namespace, root: Path) -> bool:
    extra = overrides(args.set)
    big, empty = Daemon(root, "big", extra), Daemon(root, "empty", extra)
    build_s = cached_library(big.db, args)
    build_library(empty.db, 0, args.seed)
    # Each round's new files made twice: both libraries take in the same bytes.
    sets = [
        (
            make_jpegs(root / f"r{r}-empty", args.intake, args.seed + 1 + r),
            make_jpegs(root / f"r{r}-big", args.intake, args.seed + 1 + r),
        )
        for r in range(args.rounds + 1)
    ]
    # The library was just written: flush it, or the daemon's first fsyncs would wait
    # for half a gigabyte of writeback (a cost of this benchmark, not of the daemon).
    os.sync()
    db_mb = sum(p.stat().st_size for p in big.db.parent.glob(big.db.name + "*")) / (
        1024 * 1024
    )
    rows: list[Row] = [
        (
            "library rows",
            f"{args.n:,}",
            f"built in {build_s:.1f} s" if build_s else "from the cache",
        ),
        ("database size", f"{db_mb:.0f} MB", "db + wal after checkpoint"),
    ]
    try:
        empty.start()
        big.start()
        rows += startup_rows(big, empty)
        import httpx

        base = f"http://127.0.0.1:{big.port}"
        with httpx.Client(base_url=base) as client:
            urls = read_routes(client, args.n)
        timings = time_routes(base, urls, args.requests)
        # The same requests to the empty library: the floor of each route, and both
        # daemons have then served the same work before the intake rounds.
        floor = time_routes(f"http://127.0.0.1:{empty.port}", urls, args.requests)
        medians = {u: statistics.median(s) for u, s in timings.items()}
        route_rows = [
            (
                u,
                f"{medians[u]:.1f} ms",
                f"p95 {p95(timings[u]):.1f} ms; empty library"
                f" {statistics.median(floor[u]):.1f} ms",
            )
            for u in urls
        ]
        # Alternate (empty, big, big, empty, ...), so that drift in the machine's
        # load hits both sides alike.
        spent = {"empty": 0.0, "big": 0.0}
        cpu = {"empty": 0.0, "big": 0.0}
        rounds = []
        for r, (for_empty, for_big) in enumerate(sets):
            order = [(empty, "empty", for_empty), (big, "big", for_big)]
            took = {}
            for daemon, key, staged in order if r % 2 == 0 else order[::-1]:
                before = daemon.cpu_seconds()
                took[key] = timed_intake(daemon, staged)
                if r:  # round 0 warms both daemons' caches up: not counted
                    cpu[key] += daemon.cpu_seconds() - before
                    spent[key] += took[key]
            rounds.append(f"{took['big'] / took['empty']:.2f}")
        rounds[0] = f"(warm-up {rounds[0]})"
        ratio = spent["big"] / spent["empty"]
        cpu_ratio = cpu["big"] / cpu["empty"]
        per_file = args.rounds * args.intake
        rows += [
            (
                f"intake, {per_file} files, big",
                f"{spent['big']:.2f} s",
                f"{1000 * spent['big'] / per_file:.1f} ms/file",
            ),
            (
                f"intake, {per_file} files, empty",
                f"{spent['empty']:.2f} s",
                f"{1000 * spent['empty'] / per_file:.1f} ms/file",
            ),
            (
                "intake ratio big/empty",
                f"{ratio:.2f}x",
                "same files, same run; rounds " + " ".join(rounds),
            ),
            (
                "intake CPU ratio big/empty",
                f"{cpu_ratio:.2f}x",
                f"daemon process CPU: {cpu['big']:.2f} s vs {cpu['empty']:.2f} s",
            ),
            ("peak RSS (big daemon)", f"{big.peak_rss_mb():.0f} MB", "VmHWM"),
        ]
        rss = big.peak_rss_mb()
    finally:
        big.stop()
        empty.stop()
    if not args.no_sequential:
        library = root / "library-copy.sqlite"
        shutil.copyfile(big.db, library)  # stopped: its WAL is checkpointed
        seq_cpu, seq_wall = sequential_intake(args, library, root)
        library.unlink()
        rows.append(
            (
                "intake ratio, one daemon at a time",
                f"{seq_cpu:.2f}x CPU",
                f"wall {seq_wall:.2f}x; in-process, big-empty-empty-big",
            )
        )
    print_table(f"library of {args.n:,} files", rows)
    print_table("read routes (kept-alive client)", route_rows)
    dashboard = medians["/api/dashboard"]
    slowest = max(medians, key=lambda u: medians[u])
    return print_verdicts(
        [
            Target("READY", big.ready_s, 5.0, True, " s"),
            Target("/api/dashboard median", dashboard, 50, True, " ms"),
            Target("/metrics median", medians["/metrics"], 50, True, " ms"),
            Target("slowest read route median", medians[slowest], 100, True, " ms",
                   slowest),
            Target("intake big/empty (wall)", ratio, 1.25, True, "x"),
            Target("intake big/empty (daemon CPU)", cpu_ratio, 1.25, True, "x"),
            Target("peak RSS", rss, 300, True, " MB"),
        ]
    )  # fmt: skip


def startup_rows(big: Daemon, empty: Daemon) -> list[Row]:
    rows: list[Row] = [
        ("READY, big library", f"{big.ready_s:.2f} s", "process start to /health"),
        ("READY, empty library", f"{empty.ready_s:.2f} s", "the floor, same run"),
    ]
    ready = big.log("start", "started")
    if ready is not None:
        steps = ready["extra"].get("steps", {})
        parts = ", ".join(f"{k} {v}" for k, v in steps.items())
        rows.append(
            ("Service.start, big", f"{ready['extra']['duration_ms']} ms", parts)
        )
    near = wait_for(lambda: big.log("near_index", "loaded"), 120, what="index log")
    check = wait_for(lambda: big.log("stats", "checked"), 120, what="check log")
    rows += [
        (
            "near index loaded (background)",
            f"{near['extra']['duration_ms']} ms",
            near["message"],
        ),
        (
            "counters checked (background)",
            f"{check['extra']['duration_ms']} ms",
            check["message"],
        ),
    ]
    return rows


def sequential_child(which: str, library: Path, root: Path, args: Any) -> None:
    """One daemon alone (in this process): warm-up round, then timed rounds; JSON out.

    The in-process counterpart of the side-by-side rounds: one library at a time, so
    the other daemon's memory and threads are not on the machine meanwhile.
    """
    from daemon.config import load
    from daemon.service import Service

    config = write_config(root, watcher={"settle_seconds": 0.2}, **overrides(args.set))
    db = Path(_yaml(config)["database"]["path"])
    if which == "big":
        shutil.copyfile(library, db)
    staged = [
        make_jpegs(root / f"seq{r}", args.intake, args.seed + 101 + r)
        for r in range(args.rounds + 1)
    ]
    os.sync()
    svc = Service(load(config, environ={}))
    svc.start()
    try:
        svc.ctx.near_index.wait_ready(120)
        if svc._counter_check is not None:
            svc._counter_check.join(120)
        conn = read_db(db)
        cpu, wall = 0.0, 0.0
        marks = ",".join("?" * len(DECIDED))
        decided = f"SELECT COUNT(*) FROM files WHERE id > ? AND status IN ({marks})"
        for r, folder in enumerate(staged):
            top = conn.execute("SELECT COALESCE(MAX(id), 0) FROM files").fetchone()[0]
            c0, w0 = time.process_time(), time.perf_counter()
            folder.rename(svc.ctx.roots.inbox / folder.name)

            def done(top: int = top) -> bool:
                row = conn.execute(decided, (top, *DECIDED)).fetchone()
                return bool(row[0] >= args.intake)

            wait_for(done, 600, interval=0.01)
            if r:  # round 0 warms the caches up
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
        conn.close()
    finally:
        svc.stop()
    print(json.dumps({"cpu": cpu, "wall": wall}))


def sequential_intake(args: Any, library: Path, root: Path) -> tuple[float, float]:
    """(CPU ratio, wall ratio) big/empty, each daemon alone, big-empty-empty-big."""
    totals = {"big": [0.0, 0.0], "empty": [0.0, 0.0]}
    for k, which in enumerate(("big", "empty", "empty", "big")):
        folder = root / f"seq-{k}-{which}"
        folder.mkdir()
        command = [
            sys.executable, str(Path(__file__).resolve()), "--sequential-child",
            which, "--library-file", str(library), "--workdir", str(folder),
            "--intake", str(args.intake), "--rounds", str(args.rounds),
            "--seed", str(args.seed), *[f"--set={v}" for v in args.set],
        ]  # fmt: skip
        out = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        totals[which][0] += figures["cpu"]
        totals[which][1] += figures["wall"]
    return (
        totals["big"][0] / totals["empty"][0],
        totals["big"][1] / totals["empty"][1],
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if args.sequential_child:
        sequential_child(args.sequential_child, args.library_file, args.workdir, args)
        return 0
    ok = run_in_workdir(
        "bench/scale.py", args.workdir, lambda root: run(args, root), argv
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
