"""Benchmark the sort: a whole batch sorted (dates + moves + database) vs exiftool.

    .venv/bin/python bench/sort.py               # 2,000 files (1,960 JPEGs, 40 MP4s)

Steps, all in one run: generate the corpus (bench/corpus.py: EXIF JPEGs, 5 % of
them edited exports dated only by their XMP (`--xmp-frac`), 5 % resized copies of
which about half lost their EXIF, three 8 MiB files; no exact
copies, so every file reaches the batch) plus small MP4s with a movie-header
creation time; start the daemon's Service in-process with the watcher off; move
the tree into the inbox with one rename; run the real intake stages over it
(`scan_inbox` as the dedup job does); `create_batch`; read every file once (warm
page cache). Then `--repeat` rounds, each: time `exiftool -r -p '$DateTimeOriginal'
BATCH_FOLDER`, then time one call of `pipeline.sort.sort_batch(ctx, batch)`: capture
dates, journaled link moves into sorted_dir/YYYY/MM/DD, database updates. Between
rounds the sort is undone (files renamed back into the batch folder, their rows and
the batch's reset to BATCHED/CREATED, sorted_dir emptied) so every round sorts the
same batch from scratch, after an `os.sync()` so that no round pays for the
writes of the one before; both sides are reported as best and median of the rounds.

Checks after the last round that every file ended SORTED at sorted_dir/YYYY/MM/DD/NAME with the date
the corpus wrote (EXIF DateTimeOriginal read with Pillow, else the XMP
exif:DateTimeOriginal, else IFD0 DateTime, the MP4's creation time, else the file's
mtime) and that the batch is SORTED.

Target: sort >= 20x faster than exiftool only reading the dates.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    BusyMeter,
    Row,
    Target,
    cached_corpus,
    cpu_delta,
    print_profile,
    print_table,
    print_verdicts,
    run_in_workdir,
    stderr_to,
    thread_cpu,
    tree_files,
    warm_cache,
    write_config,
)
from pipeline.fsops import SYNCFS_FROM  # noqa: E402

DROP = "drop"
VIDEO_DIR = "Phone/Video"
QT_EPOCH_OFFSET = 2_082_844_800  # seconds from 1904-01-01 to 1970-01-01
DATE_START = datetime(2012, 1, 1, tzinfo=UTC)
EXIF_DATE_TAG = 0x9003  # DateTimeOriginal, in the Exif sub-IFD
EXIF_IFD = 0x8769
EXIF_DATETIME_TAG = 0x0132  # DateTime, in IFD0 (an edited export's edit time)
XMP_ORIGINAL = re.compile(rb'exif:DateTimeOriginal="([^"]+)"')
# The writer transactions of one sort_batch, in order (pipeline/sort.py, pipeline/fsops/).
WRITER_STEPS = (
    "_record_dates (capture time, target per row)",
    "insert_entries (the move journal, durable)",
    "finish_rows (journal DONE + file rows)",
    "_finish_batch",
)


# ------------------------------------------------------------------------- videos


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4_bytes(created: datetime, payload: bytes) -> bytes:
    """A minimal MP4: ftyp, moov/mvhd (creation time, UTC) and an mdat."""
    seconds = int(created.timestamp()) + QT_EPOCH_OFFSET
    times = struct.pack(">IIII", seconds, seconds, 1000, 5000)
    rest = struct.pack(">IH10x", 0x00010000, 0x0100) + bytes(60) + struct.pack(">I", 2)
    mvhd = _box(b"mvhd", b"\x00\x00\x00\x00" + times + rest)
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 0) + b"isommp41")
    return ftyp + _box(b"moov", mvhd) + _box(b"mdat", payload)


def write_videos(
    folder: Path, count: int, seed: int, span_days: float
) -> dict[str, datetime]:
    """`count` MP4s of 100-400 KiB; returns their creation times (UTC) by name."""
    rng = np.random.default_rng([seed, 7])
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for k in range(count):
        created = DATE_START + timedelta(seconds=int(rng.integers(span_days * 86400)))
        size = int(rng.integers(100, 401)) * 1024
        name = f"VID_{k:05d}.mp4"
        payload = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        (folder / name).write_bytes(mp4_bytes(created, payload))
        made[name] = created
    return made


# ---------------------------------------------------------------- expected dates


def written_dates(
    path: Path,
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """(EXIF DateTimeOriginal, XMP exif:DateTimeOriginal, IFD0 DateTime) as the
    corpus wrote them, read with Pillow and a regex (not our reader)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            exif = img.getexif()
            original = exif.get_ifd(EXIF_IFD).get(EXIF_DATE_TAG)
            modified = exif.get(EXIF_DATETIME_TAG)
            xmp = img.info.get("xmp") or b""
    except OSError:
        return None, None, None
    match = XMP_ORIGINAL.search(xmp)
    return (
        datetime.strptime(str(original), "%Y:%m:%d %H:%M:%S") if original else None,
        datetime.fromisoformat(match[1].decode()[:19]) if match else None,
        datetime.strptime(str(modified), "%Y:%m:%d %H:%M:%S") if modified else None,
    )


def expected_day(path: Path, videos: dict[str, datetime]) -> tuple[datetime, str]:
    """(local date the file must be sorted under, which source says so)."""
    if path.name in videos and path.parent.name == Path(VIDEO_DIR).name:
        return datetime.fromtimestamp(videos[path.name].timestamp()), "video"
    original, xmp, modified = written_dates(path)
    for found, source in ((original, "exif"), (xmp, "xmp"), (modified, "exif")):
        if found is not None:
            return found, source
    return datetime.fromtimestamp(path.stat().st_mtime), "mtime"


# ------------------------------------------------------------------------ service


class Daemon:
    """The Service in-process, watcher off; stderr logging kept off the terminal."""

    def __init__(self, config: Path, stderr_log: Path):
        self.config = config
        self.stderr_log = stderr_log
        self.service: Any = None
        self._stream: TextIO | None = None

    def start(self) -> Any:
        from daemon.config import load
        from daemon.service import Service

        self._stream = open(self.stderr_log, "a", encoding="utf-8")
        with stderr_to(self._stream):
            self.service = Service(load(self.config, environ={}))
            self.service.start()
        return self.service

    def stop(self) -> None:
        from loguru import logger

        if self.service is not None:
            self.service.stop()
        logger.remove()  # the sinks hold the stream: remove them before closing it
        if self._stream is not None:
            self._stream.close()


def intake(service: Any) -> dict[str, Any]:
    """The inbox through the real stages, as `POST /api/dedup/start` does."""
    from pipeline.scan import scan_inbox

    ctx = service.ctx
    job = service.jobs.run_inline("dedup", lambda handle: scan_inbox(ctx, handle))
    return {"status": job.status, "done": job.done, "errors": job.errors}


# ------------------------------------------------------------------------ timing


def exiftool_once(folder: Path) -> tuple[float, int]:
    """Wall time of exactly `exiftool -r -p '$DateTimeOriginal' FOLDER`; dates printed."""
    command = ["exiftool", "-r", "-p", "$DateTimeOriginal", str(folder)]
    started = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    return time.perf_counter() - started, len(out.stdout.splitlines())


def unsort(ctx: Any, batch_id: int, homes: dict[int, str]) -> None:
    """Undo a sort: files back to their batch paths, rows and batch reset, library empty."""
    from pipeline.models import database_proxy

    cursor = database_proxy.connection().execute(
        "SELECT id, current_path FROM files WHERE batch = ?", (batch_id,)
    )
    for file_id, path in list(cursor):
        if path != homes[file_id]:
            os.rename(path, homes[file_id])

    def reset() -> None:
        con = database_proxy.connection()
        con.executemany(
            "UPDATE files SET status = 'BATCHED', current_path = ?, capture_time = NULL,"
            " capture_source = NULL, target_path = NULL WHERE id = ?",
            [(path, file_id) for file_id, path in homes.items()],
        )
        con.execute(
            "UPDATE batches SET status = 'CREATED', sorted_at = NULL WHERE id = ?",
            (batch_id,),
        )

    ctx.writer.call(reset)
    shutil.rmtree(ctx.roots.sorted_dir)
    ctx.roots.sorted_dir.mkdir()


@dataclass
class Phases:
    """Wall time of the parts of `sort_batch`, from wrappers installed around them."""

    plan: BusyMeter
    identical: BusyMeter
    moves: BusyMeter
    fsync: BusyMeter
    writer: BusyMeter


def instrument(ctx: Any) -> tuple[Phases, Any]:
    """Wrap the sort's parts with timers; returns them and an undo function."""
    from pipeline import sort as sort_module
    from pipeline.fsops import mover as mover_module  # where moves find sync_folders

    phases = Phases(BusyMeter(), BusyMeter(), BusyMeter(), BusyMeter(), BusyMeter())
    saved = (
        sort_module.plan_batch,
        sort_module.identical_at,
        mover_module.sync_folders,
        ctx.mover.move_many,
        ctx.writer._run_group,
    )
    sort_module.plan_batch = phases.plan.wrap(saved[0])
    sort_module.identical_at = phases.identical.wrap(saved[1])
    mover_module.sync_folders = phases.fsync.wrap(saved[2], count=len)
    ctx.mover.move_many = phases.moves.wrap(saved[3])
    ctx.writer._run_group = phases.writer.wrap(saved[4], count=lambda g: len(g))

    def undo() -> None:
        sort_module.plan_batch, sort_module.identical_at = saved[:2]
        mover_module.sync_folders = saved[2]
        del ctx.mover.move_many, ctx.writer._run_group

    return phases, undo


# ---------------------------------------------------------------------- checking


@dataclass
class Verdict:
    sorted_ok: int
    wrong_folder: list[str]
    not_sorted: list[str]
    missing_on_disk: int
    batch_status: str
    sources: dict[str, int]
    library_files: int
    day_folders: int


def verify(
    service: Any, batch_id: int, expected: dict[int, tuple[datetime, str]]
) -> Verdict:
    """Every file SORTED under sorted_dir/YYYY/MM/DD with the expected date."""
    from pipeline.models import Batch, File, FileStatus

    root = service.ctx.roots.sorted_dir
    wrong, not_sorted, ok, missing = [], [], 0, 0
    folders: set[Path] = set()
    sources: dict[str, int] = {}
    for row in File.select().where(File.batch == batch_id):
        sources[row.capture_source] = sources.get(row.capture_source, 0) + 1
        if row.status != FileStatus.SORTED:
            not_sorted.append(f"{row.rel_path}: {row.status} {row.error or ''}")
            continue
        path = Path(row.current_path)
        folders.add(path.parent)
        if not path.is_file():
            missing += 1
        when, _ = expected[row.id]
        folder = root / f"{when.year:04d}" / f"{when.month:02d}" / f"{when.day:02d}"
        stem, suffix = Path(row.rel_path).stem, Path(row.rel_path).suffix
        name_ok = path.name == Path(row.rel_path).name or (
            path.name.startswith(stem + "_") and path.suffix == suffix
        )
        if path.parent != folder or not name_ok:
            wrong.append(f"{row.rel_path} -> {path} (expected {folder})")
        else:
            ok += 1
    batch = Batch.get_by_id(batch_id)
    return Verdict(
        ok,
        wrong,
        not_sorted,
        missing,
        batch.status,
        sources,
        len(tree_files(root)),
        len(folders),
    )


# -------------------------------------------------------------------------- main


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="files in the batch")
    p.add_argument("--videos", type=int, default=40, help="of which MP4s")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--span-days",
        type=float,
        default=90,
        help="capture dates spread over this many days (a phone's batch: weeks to "
        "months; 4380 = 12 years, the worst case of one folder per file)",
    )
    p.add_argument("--big-files", type=int, default=3, help="8 MiB JPEGs")
    p.add_argument(
        "--xmp-frac",
        type=float,
        default=0.05,
        help="share of the JPEGs that are edited exports, dated only by their XMP",
    )
    p.add_argument(
        "--repeat", type=int, default=3, help="rounds of exiftool + sort (best, median)"
    )
    p.add_argument("--log-level", default="INFO", help="daemon logging.level")
    p.add_argument(
        "--profile",
        type=Path,
        help="cProfile the sort_batch call (wall clock, calling thread: the db "
        "writer's share shows as waiting in Writer.call), write the stats here",
    )
    p.add_argument(
        "--corpus-cache",
        type=Path,
        help="generate the JPEGs once into this folder and hard-link them from there",
    )
    p.add_argument("--workdir", type=Path, help="keep everything here (else a temp)")
    return p.parse_args(argv)


def prepare(args: argparse.Namespace, root: Path) -> tuple[Daemon, dict[str, datetime]]:
    staged = root / "stage" / DROP
    jpegs = args.n - args.videos
    print(f"generating {jpegs} JPEGs + {args.videos} MP4s in {staged} ...", flush=True)
    info = cached_corpus(
        args.corpus_cache,
        staged,
        n=jpegs,
        seed=args.seed,
        exact_copy_frac=0.0,
        big_files=args.big_files,
        span_days=args.span_days,
        xmp_frac=args.xmp_frac,
    )
    videos = write_videos(staged / VIDEO_DIR, args.videos, args.seed, args.span_days)
    print(f"  {info.summary()}")
    config = write_config(
        root,
        watcher={"enabled": False},
        logging={"level": args.log_level},
    )
    daemon = Daemon(config, root / "daemon-stderr.log")
    service = daemon.start()
    os.rename(staged, service.ctx.roots.inbox / DROP)
    return daemon, videos


def run(args: argparse.Namespace, root: Path) -> bool:
    from pipeline import sort
    from pipeline.batch import create_batch, location_of
    from pipeline.models import File

    profiler = cProfile.Profile() if args.profile else None
    stats: pstats.Stats | None = None
    daemon, videos = prepare(args, root)
    try:
        service = daemon.service
        ctx = service.ctx
        started = time.perf_counter()
        scan = intake(service)
        batch = create_batch(ctx)
        prep_seconds = time.perf_counter() - started
        if batch is None:
            raise SystemExit(f"no batch was created (intake: {scan})")
        folder = location_of(ctx, batch)
        rows = list(File.select().where(File.batch == batch.id))
        expected = {r.id: expected_day(Path(r.current_path), videos) for r in rows}
        homes = {r.id: r.current_path for r in rows}
        files = [Path(r.current_path) for r in rows]
        size = sum(p.stat().st_size for p in files)
        warm_cache(files)

        et_times: list[float] = []
        sort_times: list[float] = []
        reports: list[dict[str, Any]] = []
        best: tuple[Phases, dict[str, float]] | None = None
        for round_no in range(max(1, args.repeat)):
            if round_no:
                unsort(ctx, batch.id, homes)
            os.sync()  # every round starts on a clean disk, not the previous one's writes
            et_s, et_printed = exiftool_once(folder)
            et_times.append(et_s)
            phases, undo = instrument(ctx)
            cpu_before = thread_cpu()
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            reports.append(sort.sort_batch(ctx, batch))
            sort_times.append(time.perf_counter() - started)
            if profiler is not None:
                profiler.disable()
            cpu = cpu_delta(cpu_before, thread_cpu())
            undo()
            if sort_times[-1] == min(sort_times):
                best = (phases, cpu)
        if profiler is not None:
            stats = pstats.Stats(profiler)
        verdict = verify(service, batch.id, expected)
    finally:
        daemon.stop()
    if stats is not None:
        print_profile(stats, args.profile)

    assert best is not None
    phases, cpu = best
    et_best, et_median = min(et_times), statistics.median(et_times)
    sort_s, sort_median = min(sort_times), statistics.median(sort_times)
    n = len(rows)
    ratio = et_best / sort_s
    same_reports = all(r == reports[0] for r in reports)
    report = reports[-1]
    rows_out: list[Row] = [
        (
            "batch",
            f"{n} files",
            f"{size / 1e6:.0f} MB, {batch.name}; {args.videos} MP4s; intake + "
            f"create_batch took {prep_seconds:.1f} s ({scan['status']})",
        ),
        (
            "exiftool -r -p '$DateTimeOriginal'",
            f"{et_best:.2f} s",
            f"best of {len(et_times)} (median {et_median:.2f} s), warm cache, "
            f"{et_best / n * 1e3:.2f} ms/file, printed {et_printed} dates",
        ),
        (
            "sort_batch (dates + moves + db)",
            f"{sort_s:.3f} s",
            f"best of {len(sort_times)} (median {sort_median:.3f} s), "
            f"{n / sort_s:.0f} files/s, {sort_s / n * 1e6:.0f} us/file",
        ),
        ("ratio exiftool / sort", f"{ratio:.1f}x", "best / best; target >= 20x"),
        (
            "ratio of the medians",
            f"{et_median / sort_median:.1f}x",
            "every round: "
            + ", ".join(
                f"{e / t:.1f}x" for e, t in zip(et_times, sort_times, strict=True)
            ),
        ),
    ]
    print_table("sort benchmark", rows_out)
    w = phases.writer
    breakdown: list[Row] = [
        (
            "plan_batch (capture dates)",
            f"{phases.plan.seconds:.3f} s",
            f"{phases.plan.seconds / n * 1e6:.0f} us/file",
        ),
        (
            "identical_at (clash checks)",
            f"{phases.identical.seconds:.3f} s",
            f"{phases.identical.calls} calls",
        ),
        (
            "mover.move_many (all moves)",
            f"{phases.moves.seconds:.3f} s",
            "journal insert, link + unlink, fsync folders, finish rows",
        ),
        (
            "  of which sync_folders",
            f"{phases.fsync.seconds:.3f} s",
            f"{phases.fsync.items} folders made durable (fsync each, or one syncfs "
            f"from {SYNCFS_FROM}); the batch fills "
            f"{verdict.day_folders} day folders (dates spread over {args.span_days:g} days)",
        ),
        (
            "db writer busy (all of the sort)",
            f"{w.seconds:.3f} s",
            f"{w.calls} transactions, {w.items} writes",
        ),
    ]
    if w.calls == len(WRITER_STEPS):
        breakdown += [
            (f"  writer: {step}", f"{sec:.3f} s", "")
            for step, sec in zip(WRITER_STEPS, w.samples, strict=True)
        ]
    breakdown += [
        (f"CPU thread {name}", f"{sec:.2f} s", "") for name, sec in cpu.items() if sec
    ]
    print_table("where the sort time went (the fastest round)", breakdown)
    checks: list[Row] = [
        (
            "sort_batch report",
            str(report),
            "same in every round" if same_reports else "ROUNDS DIFFER",
        ),
        ("SORTED in the right YYYY/MM/DD", f"{verdict.sorted_ok}/{n}", ""),
        ("wrong folder or name", str(len(verdict.wrong_folder)), "expected 0"),
        ("not SORTED", str(len(verdict.not_sorted)), "expected 0"),
        ("missing on disk", str(verdict.missing_on_disk), "expected 0"),
        ("files in sorted_dir", str(verdict.library_files), f"expected {n}"),
        ("batch status", verdict.batch_status, "expected SORTED"),
        ("capture sources", str(verdict.sources), ""),
    ]
    print_table("correctness", checks)
    for line in (verdict.wrong_folder + verdict.not_sorted)[:10]:
        print(f"    {line}")
    correct = (
        verdict.sorted_ok == n
        and verdict.missing_on_disk == 0
        and verdict.library_files == n
        and verdict.batch_status == "SORTED"
        and same_reports
    )
    targets = [
        Target(
            "sort speed vs exiftool reading dates",
            ratio,
            20,
            False,
            "x",
            "best exiftool run against the best sort",
        ),
        Target(
            "files sorted into the wrong place",
            float(n - verdict.sorted_ok),
            0,
            True,
        ),
    ]
    return print_verdicts(targets) and correct


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    if shutil.which("exiftool") is None:
        raise SystemExit(
            "exiftool is not installed (apt install libimage-exiftool-perl)"
        )
    ok = run_in_workdir(
        "bench/sort.py", args.workdir, lambda root: run(args, root), argv
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
