"""The manual inbox scan (dedup job) waits for files to finish arriving."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.context import Context
from pipeline.models import File, FileStatus, database_proxy
from pipeline.scan import STATUS_AT_PATH, scan_inbox, settled_paths
from pipeline.store import STATUS_OF_FILE
from tests.pipeline.mediafixtures import make_jpeg


class Handle:
    """What a job function reports to, kept in memory."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.errors = 0

    def set_total(self, total: int) -> None:
        self.total = total

    def advance(self, done: int = 1, errors: int = 0) -> None:
        self.done += done
        self.errors += errors


@contextmanager
def slow_copy(path: Path, data: bytes, seconds: float) -> Iterator[threading.Event]:
    """Write `data` to `path` in pieces over `seconds`, like a slow network copy."""
    finished = threading.Event()
    pieces = 10
    step = len(data) // pieces + 1

    def write() -> None:
        with open(path, "wb") as out:
            for start in range(0, len(data), step):
                out.write(data[start : start + step])
                out.flush()
                time.sleep(seconds / pieces)
        finished.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        yield finished
    finally:
        thread.join(seconds + 10)


def test_scan_waits_for_a_file_still_being_written(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    ctx = make_ctx(watcher={"settle_seconds": 0.5})
    data = make_jpeg(tmp_path / "src.jpg", seed=3, size=(640, 480)).read_bytes()
    done = make_jpeg(ctx.roots.inbox / "done.jpg", seed=4)
    target = ctx.roots.inbox / "arriving.jpg"
    handle = Handle()
    with slow_copy(target, data, seconds=1.5) as finished:
        time.sleep(0.1)  # the copy has begun: a partial file sits in the inbox
        result: dict[str, Any] = scan_inbox(ctx, handle)  # type: ignore[arg-type]
        assert finished.is_set()  # the scan did not end before the copy did
    row = File.get(File.original_path == str(target))
    assert row.size == len(data) and row.status == FileStatus.UNIQUE
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert File.get(File.original_path == str(done)).status == FileStatus.UNIQUE
    assert result["processed"] == result["unique"] == 2
    assert result["arriving"] == 0 and handle.done == handle.total == 2


def test_scan_leaves_a_file_that_keeps_changing(
    make_ctx: Callable[..., Context], tmp_path: Path
) -> None:
    ctx = make_ctx(watcher={"settle_seconds": 0.5})
    data = b"x" * 100_000
    target = ctx.roots.inbox / "growing.mov"
    with slow_copy(target, data, seconds=2.0):
        time.sleep(0.1)
        result = scan_inbox(ctx, Handle(), max_wait=0.6)  # type: ignore[arg-type]
        assert target.stat().st_size < len(data)  # the copy still goes on
    assert result["arriving"] == 1 and result["processed"] == 0
    assert File.select().count() == 0


def test_settled_files_are_taken_without_waiting(
    make_ctx: Callable[..., Context],
) -> None:
    ctx = make_ctx(watcher={"settle_seconds": 3600})
    path = make_jpeg(ctx.roots.inbox / "old.jpg", seed=5)
    sleeps: list[float] = []
    now = path.stat().st_ctime + 7200  # quiet for two hours
    result = scan_inbox(
        ctx, Handle(), clock=lambda: now, sleep=sleeps.append  # type: ignore[arg-type]
    )
    assert result["unique"] == 1 and sleeps == []


# -- settled_paths: which inbox paths need no new look ------------------------


def row(ctx: Context, path: Path, status: str) -> None:
    st = path.stat()
    ctx.writer.call(
        lambda: File.create(
            original_path=str(path),
            rel_path=path.name,
            current_path=str(path),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            status=status,
        )
    )


def test_unchanged_rows_in_the_statuses_are_settled(ctx: Context) -> None:
    inbox = ctx.roots.inbox
    paths = {}
    for name, status in (
        ("unique.jpg", FileStatus.UNIQUE),
        ("error.jpg", FileStatus.ERROR),
        ("new.jpg", FileStatus.NEW),
        ("changed.jpg", FileStatus.UNIQUE),
        ("gone.jpg", FileStatus.UNIQUE),
    ):
        paths[name] = inbox / name
        paths[name].write_bytes(name.encode())
        row(ctx, paths[name], status)
    unknown = inbox / "unknown.jpg"
    unknown.write_bytes(b"x")
    with open(paths["changed.jpg"], "ab") as f:
        f.write(b" more")
    os.unlink(paths["gone.jpg"])

    asked = [str(p) for p in (*paths.values(), unknown)]
    assert settled_paths(asked) == {
        str(paths["unique.jpg"]),
        str(paths["error.jpg"]),
    }
    in_inbox = settled_paths(asked, FileStatus.IN_INBOX)
    assert in_inbox == {str(paths[n]) for n in ("unique.jpg", "error.jpg", "new.jpg")}


def test_no_paths_asks_nothing(ctx: Context) -> None:
    assert settled_paths([]) == set()


def test_a_path_with_sql_characters_is_only_data(ctx: Context) -> None:
    odd = ctx.roots.inbox / "it's (1) %_.jpg"
    odd.write_bytes(b"odd")
    row(ctx, odd, FileStatus.UNIQUE)
    assert settled_paths([str(odd), "' OR 1=1 --"]) == {str(odd)}


def test_the_per_file_status_lookups_use_an_index(ctx: Context) -> None:
    """A scan of a few inbox files must not read a million-row library per file."""
    con = database_proxy.connection()
    for sql, arg in ((STATUS_OF_FILE, 1), (STATUS_AT_PATH, "/inbox/a.jpg")):
        plan = " ".join(r[-1] for r in con.execute(f"EXPLAIN QUERY PLAN {sql}", (arg,)))
        assert "SEARCH files USING" in plan and "SCAN files" not in plan, plan
