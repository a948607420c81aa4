"""Retrying failed files at the stage they failed in, automatically and on request.

A file that failed (`ERROR`, with `error_stage`) is resumed by giving it back the
status that stage starts from (pipeline/states.py `resume_status`) and running that
stage again: the intake stages for a file in the inbox, the batch timer for a file
that could not be batched (it is `UNIQUE` again), a sort of its batch for one that
could not be sorted. Automatic retries come from `next_retry_at`
(pipeline/failures.py); a retry request makes every listed `ERROR` file due now and
gives it a fresh `retry.max_attempts`.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline import sort
from pipeline.context import Context
from pipeline.jobs import JobHandle
from pipeline.models import sql_time
from pipeline.stages import intake_stages, run_inline
from pipeline.states import BatchStatus, FileStatus, resume_status
from pipeline.store import db_conn, set_batch_status, set_file_status

INTAKE = (FileStatus.NEW, FileStatus.HASHED)
SORTING = (FileStatus.BATCHED, FileStatus.SYNCED)
# How often the daemon looks for due retries (one indexed query when none are due).
TICK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Resumed:
    """A file given back the status of the stage it failed in."""

    file_id: int
    status: FileStatus
    path: str
    batch: int | None


_DUE = (
    "SELECT f.id, f.current_path, f.error_stage, f.batch, b.synced_at FROM files f"
    " LEFT JOIN batches b ON b.id = f.batch"
    " WHERE f.status = ? AND f.next_retry_at IS NOT NULL AND f.next_retry_at <= ?"
    " ORDER BY f.next_retry_at, f.id LIMIT ?"
)


def due_count(conn: sqlite3.Connection, now: datetime) -> int:
    """How many failed files are due for a retry now."""
    (n,) = conn.execute(
        "SELECT COUNT(*) FROM files WHERE status = ? AND next_retry_at IS NOT NULL"
        " AND next_retry_at <= ?",
        (FileStatus.ERROR, sql_time(now)),
    ).fetchone()
    return int(n)


def resume_due(
    conn: sqlite3.Connection, now: datetime, limit: int = 500
) -> tuple[list[Resumed], int]:
    """On the writer thread: resume up to `limit` due files; each counts an attempt.

    A file no longer where it failed cannot be resumed: it stays ERROR, not retried
    again until asked. Returns (the resumed files, how many were missing).
    """
    rows = conn.execute(_DUE, (FileStatus.ERROR, sql_time(now), limit)).fetchall()
    resumed, missing = [], 0
    for file_id, path, stage, batch, synced_at in rows:
        if not os.path.lexists(path):
            missing += 1
            conn.execute(
                "UPDATE files SET next_retry_at = NULL, error = ? WHERE id = ?",
                (f"{stage or 'retry'}: file is missing: {path}", file_id),
            )
            continue
        status = resume_status(stage, batch_synced=synced_at is not None)
        set_file_status(
            conn,
            file_id,
            status,
            error=None,
            error_stage=None,
            next_retry_at=None,
            attempts=_attempts(conn, file_id) + 1,
        )
        resumed.append(Resumed(file_id, status, path, batch))
    return resumed, missing


def _attempts(conn: sqlite3.Connection, file_id: int) -> int:
    row = conn.execute("SELECT attempts FROM files WHERE id = ?", (file_id,)).fetchone()
    return int(row[0] or 0) if row else 0


def request_retry(
    conn: sqlite3.Connection, now: datetime, ids: list[int] | None = None
) -> tuple[int, list[int]]:
    """On the writer thread: make the listed (default: every) ERROR file due now.

    Each gets a fresh count of automatic attempts. Without `ids`, every batch in
    ERROR whose folder is back resumes too. Returns (files asked for, batches resumed).
    """
    where, params = "status = ?", [FileStatus.ERROR.value]
    if ids is not None:
        where += f" AND id IN ({', '.join('?' * len(ids))})"
        params += [str(i) for i in ids]
    cursor = conn.execute(
        f"UPDATE files SET next_retry_at = ?, attempts = 0 WHERE {where}",
        (sql_time(now), *params),
    )
    return cursor.rowcount, (resume_batches(conn) if ids is None else [])


def resume_batches(conn: sqlite3.Connection) -> list[int]:
    """Batches in ERROR whose folder is there again go back to where they stopped."""
    back = []
    rows = conn.execute(
        "SELECT id, location, synced_at FROM batches WHERE status = ?",
        (BatchStatus.ERROR,),
    ).fetchall()
    for batch_id, location, synced_at in rows:
        if not location or not os.path.isdir(location):
            continue
        # Only sorting stops a batch (its folder vanished): it was SYNCED, or CREATED
        # with Syncthing off.
        status = BatchStatus.SYNCED if synced_at else BatchStatus.CREATED
        set_batch_status(conn, batch_id, status, error_stage=None, last_error=None)
        back.append(batch_id)
    return back


def run_due(
    ctx: Context, handle: JobHandle | None = None, batches: tuple[int, ...] = ()
) -> dict[str, Any]:
    """Resume every due file and run its stage again; repeats while more are due.

    `batches` (resumed by a request) are sorted as well. Returns `{retried,
    failed_again, missing}`: files resumed, those of them that are ERROR again, and
    due files that could not be resumed because they are gone.
    """
    retried = missing = 0
    touched: list[int] = []
    if batches:
        _sort(ctx, set(batches))
    while True:
        batch, gone = ctx.writer.call(lambda: resume_due(db_conn(), ctx.clock()))
        missing += gone
        if not batch and not gone:
            break
        retried += len(batch)
        touched += [r.file_id for r in batch]
        if handle is not None:
            handle.set_total(retried)
        _run_stages(ctx, batch)
        if handle is not None:
            handle.advance(len(batch))
    failed = _still_failed(touched)
    if retried or missing:
        logger.bind(event="retry").info(
            "retried {} files: {} failed again, {} missing", retried, failed, missing
        )
    return {"retried": retried, "failed_again": failed, "missing": missing}


def _run_stages(ctx: Context, resumed: list[Resumed]) -> None:
    stages = intake_stages(ctx)
    batches: set[int] = set()
    for item in resumed:
        if item.status in INTAKE:
            run_inline(ctx, stages, Path(item.path))
        elif item.status in SORTING and item.batch is not None:
            batches.add(item.batch)
        # UNIQUE: back in the pool the batch timer (or POST /api/batch/create) takes.
    _sort(ctx, batches)


def _sort(ctx: Context, batch_ids: set[int]) -> None:
    for found in sort.sortable_batches(ctx):
        if found.id in batch_ids:
            sort.sort_batch(ctx, found, dry_run=ctx.settings.sort.dry_run)


def _still_failed(ids: list[int]) -> int:
    if not ids:
        return 0
    failed = 0
    conn = db_conn()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        (n,) = conn.execute(
            f"SELECT COUNT(*) FROM files WHERE status = ? AND id IN ({marks})",
            (FileStatus.ERROR, *chunk),
        ).fetchone()
        failed += n
    return failed


def retry_job(
    ctx: Context, handle: JobHandle, batches: tuple[int, ...] = ()
) -> dict[str, Any]:
    """A job function for pipeline.jobs: run every due retry (and sort `batches`)."""
    return run_due(ctx, handle, batches)
