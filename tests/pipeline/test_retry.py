"""Failures that may pass are retried until the file gets through; nothing is lost.

The library is a real, small filesystem (a tmpfs mounted for the test; where mounting
is not permitted, ENOSPC is injected at the fsops copy layer instead).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pipeline import batch as batches
from pipeline import fsops, retry, sort
from pipeline.context import Context
from pipeline.db import migrate, open_database
from pipeline.models import (
    Batch,
    BatchStatus,
    File,
    FileStatus,
    SchemaVersion,
    database_proxy,
)
from pipeline.stages import intake_stages, run_inline
from pipeline.store import db_conn
from tests.conftest import run_as_nobody
from tests.smalldisk import SmallDisk

KB = 1024
FILE_SIZE = 300 * KB


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now

    def after(self, when: datetime | None) -> None:
        assert when is not None
        self.now = when + timedelta(seconds=1)


def payload(i: int) -> bytes:
    return random.Random(i).randbytes(FILE_SIZE)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def take_in(ctx: Context, count: int) -> list[bytes]:
    """`count` distinct files through the intake stages: all UNIQUE."""
    contents = []
    for i in range(count):
        data = payload(i)
        path = ctx.roots.inbox / f"f{i}.bin"
        path.write_bytes(data)
        contents.append(data)
        run_inline(ctx, intake_stages(ctx), path)
    assert File.select().where(File.status == FileStatus.UNIQUE).count() == count
    return contents


def held(*roots: Path) -> Counter[str]:
    """SHA-256 of every file under `roots` (a multiset): what is really on disk."""
    found: Counter[str] = Counter()
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.name not in ("manifest.json", "SHA256SUMS"):
                found[digest(path.read_bytes())] += 1
    return found


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"{fsops.TEMP_PREFIX}*")]


def by_status() -> Counter[str]:
    return Counter(r.status for r in File.select())


def library_ctx(
    make_ctx: Callable[..., Context], disk: SmallDisk, **retry_keys: Any
) -> tuple[Context, Clock]:
    ctx = make_ctx(
        paths={"sorted_dir": str(disk.path)},
        intake={"media_only": False},
        retry={"backoff_seconds": 30, "max_attempts": 3, **retry_keys},
    )
    disk.wants_copy(ctx)
    clock = Clock()
    ctx.clock = clock
    return ctx, clock


def assert_nothing_lost(ctx: Context, contents: list[bytes]) -> None:
    roots = (ctx.roots.inbox, ctx.roots.batch_dir, ctx.roots.sorted_dir)
    assert held(*roots) == Counter(digest(c) for c in contents)
    assert partials(ctx.roots.sorted_dir) == []
    for row in File.select():
        assert digest(Path(row.current_path).read_bytes()) == row.sha256


def test_a_full_library_fills_and_every_file_ends_sorted_by_automatic_retry(
    make_ctx: Callable[..., Context], small_disk: Callable[[str], SmallDisk]
) -> None:
    disk = small_disk("library")
    # Root may mount (as in CI): then the filesystem is real, not an injection.
    assert disk.mounted or os.geteuid() != 0
    ctx, clock = library_ctx(make_ctx, disk)
    contents = take_in(ctx, 8)
    made = batches.create_batch(ctx)
    assert made is not None

    report = sort.sort_batch(ctx, made)

    failed = list(File.select().where(File.status == FileStatus.ERROR))
    assert report["errors"] == len(failed) and 1 <= len(failed) <= 6
    for row in failed:
        assert row.error_stage == "sort"
        assert "No space left on device" in row.error
        wait = (row.next_retry_at - clock.now).total_seconds()
        assert 30 * 0.75 <= wait <= 30 * 1.25, wait
        assert Path(row.current_path).parent == batches.folder_of(ctx, made)
    assert_nothing_lost(ctx, contents)
    # A batch with a failed file is not SORTED, says why, and is not sorted again
    # (every few seconds) until its files are retried.
    stuck = Batch.get_by_id(made.id)
    assert stuck.status == BatchStatus.CREATED
    assert "could not be sorted" in stuck.last_error
    assert "No space left on device" in stuck.last_error
    assert sort.sortable_batches(ctx) == []
    assert retry.due_count(db_conn(), clock.now) == 0

    # Due while the disk is still full: each fails again and waits twice as long.
    clock.after(max(r.next_retry_at for r in failed))
    assert retry.run_due(ctx) == {
        "retried": len(failed),
        "failed_again": len(failed),
        "missing": 0,
    }
    for row in File.select().where(File.status == FileStatus.ERROR):
        assert row.attempts == 1
        wait = (row.next_retry_at - clock.now).total_seconds()
        assert 60 * 0.75 <= wait <= 60 * 1.25, wait
    assert_nothing_lost(ctx, contents)

    disk.grow()
    clock.after(
        max(r.next_retry_at for r in File.select().where(File.status == "ERROR"))
    )
    assert retry.run_due(ctx) == {
        "retried": len(failed),
        "failed_again": 0,
        "missing": 0,
    }

    assert by_status() == {FileStatus.SORTED: 8}
    finished = Batch.get_by_id(made.id)
    assert finished.status == BatchStatus.SORTED and finished.last_error is None
    assert held(ctx.roots.sorted_dir) == Counter(digest(c) for c in contents)
    assert_nothing_lost(ctx, contents)


def test_attempts_run_out_then_a_retry_request_finishes_the_job(
    make_ctx: Callable[..., Context], small_disk: Callable[[str], SmallDisk]
) -> None:
    disk = small_disk("library")
    ctx, clock = library_ctx(make_ctx, disk, max_attempts=1)
    contents = take_in(ctx, 6)
    made = batches.create_batch(ctx)
    assert made is not None
    sort.sort_batch(ctx, made)
    failed = [r.id for r in File.select().where(File.status == FileStatus.ERROR)]
    assert failed
    clock.after(max(File.get_by_id(i).next_retry_at for i in failed))
    assert retry.run_due(ctx)["failed_again"] == len(failed)
    # max_attempts used up: no further automatic retry, however long we wait.
    assert all(File.get_by_id(i).next_retry_at is None for i in failed)
    clock.now += timedelta(days=30)
    assert retry.run_due(ctx) == {"retried": 0, "failed_again": 0, "missing": 0}

    disk.grow()
    asked = ctx.writer.call(lambda: retry.request_retry(db_conn(), clock.now, failed))
    assert asked == (len(failed), [])
    assert retry.run_due(ctx) == {
        "retried": len(failed),
        "failed_again": 0,
        "missing": 0,
    }
    assert by_status() == {FileStatus.SORTED: 6}
    assert Batch.get_by_id(made.id).status == BatchStatus.SORTED
    assert_nothing_lost(ctx, contents)


def test_a_failed_batch_move_is_retried(
    make_ctx: Callable[..., Context], small_disk: Callable[[str], SmallDisk]
) -> None:
    """Files that did not fit into the batch folder wait in the inbox, then batch."""
    disk = small_disk("batches")
    ctx = make_ctx(
        paths={"batch_dir": str(disk.path)},
        intake={"media_only": False},
        retry={"backoff_seconds": 5},
    )
    disk.wants_copy(ctx)
    clock = Clock()
    ctx.clock = clock
    contents = take_in(ctx, 6)
    first = batches.create_batch(ctx)
    assert first is not None
    failed = list(File.select().where(File.status == FileStatus.ERROR))
    assert failed and first.file_count == 6 - len(failed)
    for row in failed:
        assert row.error_stage == "batch" and row.batch is None
        assert "No space left on device" in row.error
        assert Path(row.current_path).parent == ctx.roots.inbox
    assert partials(disk.path) == []
    assert held(ctx.roots.inbox, disk.path) == Counter(digest(c) for c in contents)

    disk.grow()
    clock.after(max(r.next_retry_at for r in failed))
    assert retry.run_due(ctx) == {
        "retried": len(failed),
        "failed_again": 0,
        "missing": 0,
    }
    assert all(File.get_by_id(r.id).status == FileStatus.UNIQUE for r in failed)
    second = batches.create_batch(ctx)
    assert second is not None and second.file_count == len(failed)
    assert by_status() == {FileStatus.BATCHED: 6}
    assert held(disk.path) == Counter(digest(c) for c in contents)


def test_a_failure_that_cannot_pass_waits_for_a_request(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    ctx = make_ctx(intake={"media_only": False})
    contents = take_in(ctx, 2)
    made = batches.create_batch(ctx)
    assert made is not None
    gone = File.get(File.rel_path == "f1.bin")
    kept = Path(tmp_path / "kept.bin")
    Path(gone.current_path).rename(kept)  # someone took it out of the batch folder
    sort.sort_batch(ctx, made)
    row = File.get_by_id(gone.id)
    assert (row.status, row.error_stage, row.next_retry_at) == ("ERROR", "sort", None)
    assert "source is missing" in row.error
    stuck = Batch.get_by_id(made.id)
    assert stuck.status == BatchStatus.CREATED and "1 file(s)" in stuck.last_error

    # Asked while it is still gone: it stays ERROR and says so.
    ctx.writer.call(lambda: retry.request_retry(db_conn(), ctx.clock()))
    assert retry.run_due(ctx) == {"retried": 0, "failed_again": 0, "missing": 1}
    row = File.get_by_id(gone.id)
    assert row.status == FileStatus.ERROR and "file is missing" in row.error
    # Put back and asked again: sorted, and the batch with it.
    kept.rename(gone.current_path)
    ctx.writer.call(lambda: retry.request_retry(db_conn(), ctx.clock(), [gone.id]))
    assert retry.run_due(ctx)["retried"] == 1
    assert by_status() == {FileStatus.SORTED: 2}
    assert Batch.get_by_id(made.id).status == BatchStatus.SORTED
    assert held(ctx.roots.sorted_dir) == Counter(digest(c) for c in contents)


def test_a_batch_whose_folder_vanished_is_error_until_retried(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    ctx = make_ctx(intake={"media_only": False})
    take_in(ctx, 2)
    made = batches.create_batch(ctx)
    assert made is not None
    folder = batches.folder_of(ctx, made)
    away = tmp_path / "away"
    folder.rename(away)
    report = sort.sort_batch(ctx, made)
    assert report["errors"] == 1
    row = Batch.get_by_id(made.id)
    assert row.status == BatchStatus.ERROR and row.error_stage == "sort"
    assert "batch folder is missing" in row.last_error
    # Its files are not failed: they are where the batch is.
    assert by_status() == {FileStatus.BATCHED: 2}
    assert sort.sortable_batches(ctx) == []
    # A retry request while it is still gone changes nothing.
    assert ctx.writer.call(lambda: retry.request_retry(db_conn(), ctx.clock())) == (
        0,
        [],
    )
    away.rename(folder)
    asked = ctx.writer.call(lambda: retry.request_retry(db_conn(), ctx.clock()))
    assert asked == (0, [made.id])
    retry.run_due(ctx, batches=tuple(asked[1]))
    assert Batch.get_by_id(made.id).status == BatchStatus.SORTED
    assert by_status() == {FileStatus.SORTED: 2}


def test_a_vanished_library_is_not_recreated_and_is_retried(
    make_ctx: Callable[..., Context],
) -> None:
    ctx = make_ctx(intake={"media_only": False}, retry={"backoff_seconds": 5})
    take_in(ctx, 1)
    made = batches.create_batch(ctx)
    assert made is not None
    ctx.roots.sorted_dir.rmdir()  # an unmounted disk: the mount point is gone too
    sort.sort_batch(ctx, made)
    assert not ctx.roots.sorted_dir.exists()
    row = File.get()
    assert row.status == FileStatus.ERROR and row.next_retry_at is not None
    assert "destination folder is missing" in row.error
    ctx.roots.sorted_dir.mkdir()
    ctx.clock = lambda: row.next_retry_at + timedelta(seconds=1)
    assert retry.run_due(ctx) == {"retried": 1, "failed_again": 0, "missing": 0}
    assert File.get().status == FileStatus.SORTED


def test_migration_5_reopens_batches_left_sorted_with_failed_files(
    tmp_path: Path,
) -> None:
    db = open_database(tmp_path / "old.sqlite", strict_states=False)
    try:
        b = Batch.create(name="batch_000001", status="SORTED")
        common = {"original_path": "/x", "rel_path": "x", "batch": b.id}
        full = File.create(
            current_path="/b/x",
            status="ERROR",
            error="sort: No space left on device",
            **common,
        )
        odd = File.create(
            current_path="/b/y",
            status="ERROR",
            error="sort: not a regular file",
            **common,
        )
        SchemaVersion.delete().where(SchemaVersion.version == 5).execute()
        db.execute_sql("UPDATE files SET error_stage = NULL, next_retry_at = NULL")
        assert migrate(db) == [5]
        assert Batch.get_by_id(b.id).status == BatchStatus.CREATED
        full, odd = File.get_by_id(full.id), File.get_by_id(odd.id)
        assert (full.error_stage, odd.error_stage) == ("sort", "sort")
        assert full.next_retry_at is not None and odd.next_retry_at is None
    finally:
        db.close()
        database_proxy.initialize(None)


def test_a_permission_error_fixed_by_chmod_is_retried() -> None:
    """Unreadable inbox file and unwritable library, each fixed by chmod (as nobody)."""
    root = Path(tempfile.mkdtemp(prefix="mp-retry-"))
    try:
        root.chmod(0o777)
        cmd = [sys.executable, str(Path(__file__).with_name("retry_child.py"))]
        cmd.append(str(root / "run"))
        proc = run_as_nobody(cmd, 120, PYTHONPATH=str(Path(__file__).parents[2]))
        assert proc.returncode == 0, proc.stderr[-3000:]
        seen = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)

    locked, opened = seen["unreadable"]["files"]
    assert locked[:3] == ["locked.bin", "ERROR", "hash"] and "Permission" in locked[3]
    assert opened[1] == "UNIQUE"
    assert seen["retried_in"] == {"retried": 1, "failed_again": 0, "missing": 0}
    assert [f[1] for f in seen["readable"]["files"]] == ["UNIQUE", "UNIQUE"]

    after = seen["library_locked"]
    assert {f[1] for f in after["files"]} == {"ERROR"}
    assert all(f[2] == "sort" and "Permission denied" in f[3] for f in after["files"])
    assert after["batches"][0][0] == "CREATED"  # not SORTED with failed files
    assert seen["retried_sort"] == {"retried": 2, "failed_again": 0, "missing": 0}
    assert seen["sorted"]["files"] == [
        ["locked.bin", "SORTED", None, None],
        ["open.bin", "SORTED", None, None],
    ]
    assert seen["sorted"]["batches"] == [["SORTED", None]]


def test_two_sorts_of_one_batch_take_turns(make_ctx: Callable[..., Context]) -> None:
    """A retry's sort and a sort job on the same batch never move a file twice."""
    ctx = make_ctx(intake={"media_only": False})
    contents = take_in(ctx, 3)
    made = batches.create_batch(ctx)
    assert made is not None
    paused, go = threading.Event(), threading.Event()

    def checkpoint(step: str) -> None:
        if step == "journaled" and threading.current_thread().name == "first":
            paused.set()
            go.wait(10)

    ctx.mover.checkpoint = checkpoint
    reports: dict[str, Any] = {}

    def run(name: str) -> None:
        reports[name] = sort.sort_batch(ctx, Batch.get_by_id(made.id))

    first = threading.Thread(target=run, args=("first",), name="first")
    first.start()
    assert paused.wait(10)
    second = threading.Thread(target=run, args=("second",), name="second")
    second.start()
    second.join(1.0)  # a racing second sort would be done by now
    go.set()
    first.join(10)
    second.join(10)
    assert reports["first"]["sorted"] == 3 and reports["first"]["errors"] == 0
    assert reports["second"]["sorted"] == 0 and reports["second"]["errors"] == 0
    assert by_status() == {FileStatus.SORTED: 3}
    assert all(r.error is None for r in File.select())
    assert held(ctx.roots.sorted_dir) == Counter(digest(c) for c in contents)
