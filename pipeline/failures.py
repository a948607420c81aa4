"""Recording a file's failure: the stage, the message, and when it is retried.

A failure that may pass (full disk, I/O error, permission, a folder that vanished)
gets `next_retry_at` after a back-off that doubles with each attempt
(`retry.backoff_seconds` × 2^attempts, ±25 % jitter) until `retry.max_attempts`;
then, like any other failure, it waits for a retry request.
"""

from __future__ import annotations

import errno as errnos
import random
import sqlite3
from datetime import datetime, timedelta
from typing import Any

from loguru import logger

from pipeline.context import Context
from pipeline.settings import RetrySettings
from pipeline.states import FileStatus
from pipeline.store import db_conn, set_file_status

# errnos of failures that pass once their cause is fixed: retried automatically.
TRANSIENT_ERRNOS = frozenset(
    {
        errnos.ENOSPC,
        errnos.EDQUOT,
        errnos.EIO,
        errnos.EACCES,
        errnos.EPERM,
        errnos.EROFS,
        errnos.ENOENT,  # a folder vanished under a move (the source is checked first)
        errnos.EAGAIN,
        errnos.EBUSY,
        errnos.ETIMEDOUT,
        errnos.ESTALE,
        errnos.ENOTCONN,
        errnos.ENODEV,
    }
)
JITTER = 0.25
_random = random.Random()


def is_transient(errno: int | None) -> bool:
    """True for an errno whose cause may pass (see TRANSIENT_ERRNOS)."""
    return errno in TRANSIENT_ERRNOS


def errno_of(exc: BaseException) -> int | None:
    """The errno an exception carries (an OSError, or a MoveError from one)."""
    value = getattr(exc, "errno", None)
    return value if isinstance(value, int) else None


def next_retry_at(
    now: datetime,
    attempts: int,
    retry: RetrySettings,
    rng: random.Random = _random,
) -> datetime | None:
    """When the next automatic retry is due, or None once `retry.max_attempts` is used."""
    if attempts >= retry.max_attempts:
        return None
    delay = retry.backoff_seconds * 2**attempts
    delay *= rng.uniform(1 - JITTER, 1 + JITTER)
    return now + timedelta(seconds=delay)


def fail_file(
    conn: sqlite3.Connection,
    file_id: int,
    stage: str,
    message: str,
    *,
    transient: bool,
    retry: RetrySettings,
    now: datetime,
    only_from: tuple[str, ...] | None = None,
    **columns: Any,
) -> tuple[bool, datetime | None]:
    """On the writer thread: the file becomes ERROR in `stage` (and `columns` are set).

    Returns (whether it was recorded, when it is retried). With `only_from`, a file
    whose status is not one of those (it went on meanwhile) is left alone.
    """
    row = conn.execute(
        "SELECT attempts, status FROM files WHERE id = ?", (file_id,)
    ).fetchone()
    if row is None or (only_from is not None and row[1] not in only_from):
        return False, None
    due = next_retry_at(now, row[0] or 0, retry) if transient else None
    text = message if message.startswith(f"{stage}:") else f"{stage}: {message}"
    set_file_status(
        conn,
        file_id,
        FileStatus.ERROR,
        error=text,
        error_stage=stage,
        next_retry_at=due,
        **columns,
    )
    return True, due


def record_failure(
    ctx: Context,
    file_id: int | None,
    stage: str,
    message: str,
    errno: int | None = None,
    only_from: tuple[str, ...] | None = None,
    **columns: Any,
) -> None:
    """Record a file's failure through the writer; `columns` are set along with it."""
    if file_id is None:
        return
    transient = is_transient(errno)

    def write() -> tuple[bool, datetime | None]:
        return fail_file(
            db_conn(),
            file_id,
            stage,
            message,
            transient=transient,
            retry=ctx.settings.retry,
            now=ctx.clock(),
            only_from=only_from,
            **columns,
        )

    recorded, due = ctx.writer.call(write)
    if not recorded:
        return
    if ctx.alerts is not None:
        ctx.alerts.file_failed(file_id, _name_of(file_id), f"{stage}: {message}")
    logger.bind(event=stage, file_id=file_id, status=FileStatus.ERROR).warning(
        "{} failed: {} ({})",
        stage,
        message,
        f"retried after {due:%H:%M:%S}" if due else "waits for a retry request",
    )


def _name_of(file_id: int) -> str:
    """The file's path inside the inbox, for the owner's message."""
    row = db_conn().execute("SELECT rel_path FROM files WHERE id = ?", (file_id,))
    found = row.fetchone()
    return str(found[0]) if found else f"file {file_id}"
