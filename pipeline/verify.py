"""Verify: every sorted or adopted file is still present at `current_path` and unchanged.

Size and mtime are compared with what was recorded; with `hash_all` the SHA-256 is
recomputed (at a bounded rate when scheduled). A file that is gone becomes `MISSING`
unless the same content turns up elsewhere in the library (sorted_dir and every
adopted root), in which case its row follows it. Changed content becomes `CORRUPT`.
Nothing is ever deleted, moved or overwritten here: findings are listed with the
last-known hash, the batch and its manifest, and (Syncthing enabled) whether
Syncthing's global copy of the batch file is still held by a remote device
(pipeline/verify_findings.py). A `MISSING` or `CORRUPT` file found intact again goes
back to `SORTED`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger
from peewee import fn

from pipeline.context import Context
from pipeline.hashing import FileChanged
from pipeline.intake import walk_inbox
from pipeline.jobs import JobHandle
from pipeline.models import (
    File,
    FileStatus,
    LibraryRoot,
    VerifyRun,
    database_proxy,
    iso,
    sql_list,
    sql_time,
    tuples,
    utcnow,
)
from pipeline.store import move_files
from pipeline.verify_check import (
    Check,
    Row,
    Tally,
    Throttle,
    check_file,
    hash_throttled,
)
from pipeline.verify_findings import CORRUPT, LISTED, MISSING, findings

CHECKED = (FileStatus.SORTED, MISSING, CORRUPT)
PAGE = 1000
MB = 1024 * 1024


# --------------------------------------------------------------- the database


def _pages(after: int = 0) -> Iterator[list[Row]]:
    con = database_proxy.connection()
    while True:
        rows = [
            Row(*r)
            for r in con.execute(
                "SELECT id, current_path, size, mtime_ns, sha256, status FROM files"
                f" WHERE id > ? AND status IN {sql_list(CHECKED)} ORDER BY id LIMIT ?",
                (after, PAGE),
            )
        ]
        if not rows:
            return
        yield rows
        after = rows[-1].id


# A finding is written only to the row as it was checked: a check can run minutes
# after its page was read (a throttled --hash run), and meanwhile the owner may
# have set the file aside (DUPLICATE, moved to duplicates_dir) or a sort moved it.
_AS_CHECKED = " WHERE id = ? AND status = ? AND current_path = ?"
_SAME_ROW = "id = ? AND current_path = ?"


def _apply(checks: list[Check], tally: Tally) -> None:
    """On the writer thread: record corrupt, restored and touched files."""
    con = database_proxy.connection()
    now = sql_time(utcnow())
    for c in checks:
        row = c.row
        checked = (row.id, row.status, row.path)
        if c.outcome == "corrupt" and row.status != CORRUPT:
            found = f"sha256 now {c.sha256}" if c.sha256 else "not hashed"
            tally.corrupt += move_files(
                con,
                FileStatus(row.status),
                CORRUPT,
                _SAME_ROW,
                (row.id, row.path),
                error=f"verify: content changed ({found}, size {c.size}, was "
                f"{row.size}); the last-known SHA-256 is kept",
            )
        elif c.outcome in ("ok", "touched") and row.status != FileStatus.SORTED:
            tally.restored += move_files(
                con,
                FileStatus(row.status),
                FileStatus.SORTED,
                _SAME_ROW,
                (row.id, row.path),
                error=None,
                mtime_ns=c.mtime_ns,
            )
        elif c.outcome == "touched":
            con.execute(
                "UPDATE files SET mtime_ns = ?, updated_at = ?" + _AS_CHECKED,
                (c.mtime_ns, now, *checked),
            )


def _mark_missing(rows: list[Row], tally: Tally) -> None:
    con = database_proxy.connection()
    for row in rows:
        if row.status == MISSING:
            continue
        tally.missing += move_files(
            con,
            FileStatus(row.status),
            MISSING,
            _SAME_ROW,
            (row.id, row.path),
            error=f"verify: not found at {row.path}",
        )


def _moved(row: Row, path: str, mtime_ns: int) -> bool:
    """Point the row at where its content turned up; False if the row changed."""
    updated = move_files(
        database_proxy.connection(),
        FileStatus(row.status),
        FileStatus.SORTED,
        _SAME_ROW,
        (row.id, row.path),
        current_path=path,
        target_path=path,
        mtime_ns=mtime_ns,
        error=None,
    )
    return bool(updated)


# ------------------------------------------------------- files moved in the library


def library_roots(ctx: Context) -> list[Path]:
    """sorted_dir and every adopted folder outside it."""
    roots = [ctx.roots.sorted_dir]
    for row in LibraryRoot.select(LibraryRoot.path):
        path = Path(row.path)
        if not any(path == r or r in path.parents for r in roots):
            roots.append(path)
    return roots


def _unknown_files(ctx: Context, sizes: set[int]) -> Iterator[tuple[str, int, int]]:
    """(path, size, mtime_ns) of library files no row points at, of a wanted size."""
    con = database_proxy.connection()
    patterns = ctx.settings.watcher.ignore_patterns
    for root in library_roots(ctx):
        for path in walk_inbox(root, patterns):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_size not in sizes:
                continue
            known = con.execute(
                "SELECT 1 FROM files WHERE current_path = ? AND status != ?",
                (str(path), MISSING),
            ).fetchone()
            if not known:
                yield str(path), st.st_size, st.st_mtime_ns


def find_moved(
    ctx: Context, gone: list[Row], throttle: Throttle, tally: Tally
) -> list[Row]:
    """Follow files moved within the library by their SHA-256; returns those still gone."""
    by_hash: dict[str, list[Row]] = {}
    for row in gone:
        if row.sha256:
            by_hash.setdefault(row.sha256, []).append(row)
    sizes = {row.size for row in gone if row.size}
    candidates = list(_unknown_files(ctx, sizes)) if sizes else []

    def digest(item: tuple[str, int, int]) -> tuple[str, int, int, str | None]:
        path, size, mtime_ns = item
        try:
            return path, size, mtime_ns, hash_throttled(ctx, path, size, throttle)[0]
        except (FileChanged, OSError, ValueError):
            return path, 0, mtime_ns, None

    found: set[int] = set()
    with ThreadPoolExecutor(ctx.settings.system.max_parallel_fs_ops) as pool:
        for path, size, mtime_ns, sha in pool.map(digest, candidates):
            tally.bytes_read += size
            waiting = by_hash.get(sha or "")
            if not waiting:
                continue
            row = waiting.pop(0)
            if not ctx.writer.call(partial(_moved, row, path, mtime_ns)):
                continue  # changed meanwhile: not ours to follow
            found.add(row.id)
            tally.moved.append({"file_id": row.id, "from": row.path, "to": path})
            logger.bind(event="verify", file_id=row.id, status=FileStatus.SORTED).info(
                "{} moved within the library to {}", row.path, path
            )
    return [row for row in gone if row.id not in found]


def last_run() -> dict[str, Any] | None:
    """The latest finished verify and the library's current findings (for /health)."""
    run = (
        VerifyRun.select()
        .where(VerifyRun.finished_at.is_null(False))
        .order_by(VerifyRun.id.desc())
        .first()
    )
    if run is None:
        return None
    counts: dict[str, int] = dict(
        tuples(
            File.select(File.status, fn.COUNT(File.id))
            .where(File.status.in_((MISSING, CORRUPT)))
            .group_by(File.status)
        )
    )
    return {
        "finished_at": iso(run.finished_at),
        "hashed": run.hashed,
        "checked": run.checked,
        "found_missing": run.missing,
        "found_corrupt": run.corrupt,
        "moved": run.moved,
        "restored": run.restored,
        "missing_now": counts.get(MISSING, 0),
        "corrupt_now": counts.get(CORRUPT, 0),
        "ok": run.error is None
        and not counts.get(MISSING, 0)
        and not counts.get(CORRUPT, 0),
    }


def due(now: datetime, interval_days: float) -> bool:
    """True when a scheduled `verify --hash` should run (0 days = never)."""
    if interval_days <= 0:
        return False
    limit = now - timedelta(days=interval_days)
    last = (
        VerifyRun.select(VerifyRun.finished_at)
        .where(VerifyRun.hashed, VerifyRun.finished_at.is_null(False))
        .order_by(VerifyRun.finished_at.desc())
        .first()
    )
    if last is not None:
        return bool(last.finished_at <= limit)
    # Never verified: once the oldest library file is one interval old.
    oldest = (
        File.select(File.created_at)
        .where(File.status == FileStatus.SORTED)
        .order_by(File.created_at)
        .first()
    )
    return oldest is not None and oldest.created_at <= limit


# ------------------------------------------------------------------------ job


def verify_job(
    ctx: Context,
    handle: JobHandle,
    hash_all: bool = False,
    scheduled: bool = False,
    rate_mb_per_s: float = 0.0,
) -> dict[str, Any]:
    """Check the library (see the module docstring); a job function for pipeline.jobs."""
    started = time.monotonic()
    run_id = ctx.writer.call(
        lambda: VerifyRun.create(
            job_id=handle.job_id, hashed=hash_all, scheduled=scheduled
        ).id
    )
    throttle = Throttle(rate_mb_per_s * MB)
    tally = Tally()
    handle.set_total(File.select().where(File.status.in_(CHECKED)).count())
    gone: list[Row] = []
    try:
        with ThreadPoolExecutor(ctx.settings.system.max_parallel_fs_ops) as pool:
            for page in _pages():
                checks = list(
                    pool.map(lambda r: check_file(ctx, r, hash_all, throttle), page)
                )
                ctx.writer.call(partial(_apply, checks, tally))
                gone += [c.row for c in checks if c.outcome == "missing"]
                tally.checked += len(checks)
                tally.busy += sum(c.outcome == "busy" for c in checks)
                tally.bytes_read += sum(c.bytes_read for c in checks)
                handle.advance(len(checks))
        still_gone = find_moved(ctx, gone, throttle, tally) if gone else []
        ctx.writer.call(lambda: _mark_missing(still_gone, tally))
    except Exception as exc:
        failure = f"{type(exc).__name__}: {exc}"
        ctx.writer.call(
            lambda: VerifyRun.update(error=failure)
            .where(VerifyRun.id == run_id)
            .execute()
        )
        raise
    ctx.writer.call(
        lambda: VerifyRun.update(
            finished_at=utcnow(),
            checked=tally.checked,
            missing=tally.missing,
            corrupt=tally.corrupt,
            moved=len(tally.moved),
            restored=tally.restored,
            bytes_read=tally.bytes_read,
        )
        .where(VerifyRun.id == run_id)
        .execute()
    )
    listed = findings(ctx)
    missing_now = sum(f["status"] == MISSING for f in listed)
    corrupt_now = len(listed) - missing_now
    seconds = time.monotonic() - started
    log = logger.bind(event="verify", duration_ms=round(seconds * 1000))
    (log.warning if listed else log.info)(
        "verified {} files{}: {} missing, {} corrupt, {} moved, {} restored",
        tally.checked,
        " (SHA-256)" if hash_all else "",
        missing_now,
        corrupt_now,
        len(tally.moved),
        tally.restored,
    )
    if listed and ctx.alerts is not None:
        _tell_owner(ctx.alerts, listed, missing_now, corrupt_now)
    return {
        "message": (
            f"{tally.checked} files checked{' (SHA-256)' if hash_all else ''}: "
            f"{missing_now} missing, {corrupt_now} corrupt, {len(tally.moved)} moved, "
            f"{tally.restored} restored"
        ),
        "hashed": hash_all,
        "checked": tally.checked,
        "new_missing": tally.missing,
        "new_corrupt": tally.corrupt,
        "restored": tally.restored,
        "busy": tally.busy,
        "bytes_read": tally.bytes_read,
        "moved": tally.moved[:LISTED],
        "findings": listed,
    }


def _tell_owner(
    alerts: Any, listed: list[dict[str, Any]], missing: int, corrupt: int
) -> None:
    """A `library_check` message: the counts and the first ten files."""
    lines = "\n".join(f"- {f['path']}: {f['status']}" for f in listed[:10])
    more = f"\n... and {len(listed) - 10} more" if len(listed) > 10 else ""
    alerts.event(
        "library_check",
        f"Library check: {missing} missing, {corrupt} corrupt",
        f"The library check found {missing} files MISSING and {corrupt} CORRUPT:\n"
        f"{lines}{more}\nWhat to do: restore them from a Syncthing peer or a backup "
        "(see Library on the dashboard); a file found intact again is cleared by the "
        "next check.",
    )
