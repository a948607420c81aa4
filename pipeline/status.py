"""Read-only summaries of the database, shared by the CLI, API, dashboard and metrics.

Counts come from the trigger-kept counters (pipeline/stats.py): a few dozen rows,
whatever the size of the library. The queries left here read only rows that are
few by nature (errors, files waiting for a batch, batches in flight).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline import stats
from pipeline.models import BatchStatus, FileStatus, database_proxy, iso, sql_list
from pipeline.settings import BatchSettings

GB = 1024**3
# Folders a file is in, by its status (batches: see `in_flight_bytes`).
INBOX_STATUSES = FileStatus.IN_INBOX
TO_SORT = (FileStatus.BATCHED, FileStatus.SYNCED)
# Dates the owner may want to check: the capture time was guessed from the mtime.
GUESSED_SOURCE = "mtime"


def counters() -> stats.Snapshot:
    return stats.snapshot(database_proxy)


def file_counts(snap: stats.Snapshot | None = None) -> dict[str, int]:
    """Files by status: every known status (0 when none), then any other stored."""
    snap = snap or counters()
    return snap.by(stats.FILE_STATUS, tuple(FileStatus.ALL))


def batch_counts(snap: stats.Snapshot | None = None) -> dict[str, int]:
    snap = snap or counters()
    return snap.by(stats.BATCH_STATUS, tuple(BatchStatus.ALL))


def capture_sources(snap: stats.Snapshot | None = None) -> dict[str, int]:
    """Files by where their capture date came from (exif, …, mtime)."""
    snap = snap or counters()
    return snap.by(stats.FILE_SOURCE)


def mtime_dated(snap: stats.Snapshot | None = None) -> int:
    """Files whose capture date is only their mtime: the number to watch."""
    snap = snap or counters()
    return snap.n(stats.FILE_SOURCE, GUESSED_SOURCE)


def near_duplicate_count(snap: stats.Snapshot | None = None) -> int:
    snap = snap or counters()
    return snap.n(stats.FILE_FLAG, stats.NEAR)


def hashed_count(snap: stats.Snapshot | None = None) -> int:
    snap = snap or counters()
    return snap.n(stats.FILE_FLAG, stats.HASHED)


def status_bytes(snap: stats.Snapshot, statuses: tuple[str, ...]) -> int:
    return sum(snap.bytes(stats.FILE_STATUS, s) for s in statuses)


def in_flight_bytes() -> dict[str, int]:
    """Bytes of files in batch_dir and in sync_dir, from the batches not yet sorted.

    Reads the files of unsorted batches only (index on files(batch, status)): a
    BATCHED file of a CREATED batch lies in batch_dir; BATCHED or SYNCED files of a
    batch handed over (SYNCING, SYNCED) lie in sync_dir.
    """
    rows = database_proxy.execute_sql(
        "SELECT b.status, f.status, COALESCE(SUM(f.size), 0) FROM batches b"
        " JOIN files f ON f.batch = b.id AND f.status IN"
        f" {sql_list((FileStatus.BATCHED, FileStatus.SYNCED))}"
        " WHERE b.status IN"
        f" {sql_list((BatchStatus.CREATED, BatchStatus.SYNCING, BatchStatus.SYNCED))}"
        " GROUP BY b.status, f.status"
    ).fetchall()
    out = {"batch_dir": 0, "sync_dir": 0}
    for batch_status, file_status, size in rows:
        if batch_status == BatchStatus.CREATED:
            if file_status == FileStatus.BATCHED:
                out["batch_dir"] += int(size)
        else:
            out["sync_dir"] += int(size)
    return out


def storage_bytes(snap: stats.Snapshot | None = None) -> dict[str, int]:
    """Bytes of tracked files in each folder, by where their status says they are."""
    snap = snap or counters()
    flight = in_flight_bytes()
    return {
        "inbox": status_bytes(snap, INBOX_STATUSES),
        "duplicates_dir": status_bytes(snap, (FileStatus.DUPLICATE,)),
        "batch_dir": flight["batch_dir"],
        "sync_dir": flight["sync_dir"],
        "sorted_dir": status_bytes(snap, (FileStatus.SORTED,)),
    }


def waiting_totals() -> tuple[int, int, datetime | None]:
    """(files, bytes, when the oldest was accepted) of what waits for a batch."""
    count, size, oldest = database_proxy.execute_sql(
        "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(updated_at) FROM files"
        f" WHERE batch IS NULL AND status = '{FileStatus.UNIQUE}'"
    ).fetchone()
    return int(count), int(size), _parse(oldest) if oldest is not None else None


def waiting(now: datetime, batch: BatchSettings | None = None) -> dict[str, Any]:
    """Files accepted and waiting for a batch, and when the next batch is due.

    `batch` is the `batch` settings section (max_size_gb, max_age_seconds,
    auto_create); without it `next_batch_at` and `max_bytes` are None. The next
    batch comes when the oldest waiting file is `max_age_seconds` old, or sooner
    once `max_bytes` wait (then `next_batch_at` is now).
    """
    count, size, oldest = waiting_totals()
    out: dict[str, Any] = {
        "files": count,
        "bytes": size,
        "next_batch_at": None,
        "max_bytes": None,
    }
    if batch is None:
        return out
    out["max_bytes"] = int(batch.max_size_gb * GB)
    due = next_batch_due((count, size, oldest), now, batch)
    if due is not None and batch.auto_create:
        out["next_batch_at"] = iso(due)
    return out


def next_batch_due(
    totals: tuple[int, int, datetime | None], now: datetime, batch: BatchSettings
) -> datetime | None:
    """When the next batch is due, from `waiting_totals()`; None when nothing waits.

    The oldest waiting file `max_age_seconds` old, or `now` once `max_size_gb`
    waits. The dashboard shows it and the batch timer wakes for it.
    """
    count, size, oldest = totals
    if not count or oldest is None:
        return None
    due = oldest + timedelta(seconds=batch.max_age_seconds)
    return min(due, now) if size >= batch.max_size_gb * GB else due


def _parse(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def recent_errors(limit: int = 10) -> list[dict[str, Any]]:
    rows = database_proxy.execute_sql(
        "SELECT id, current_path, error, updated_at FROM files WHERE status = ?"
        " ORDER BY updated_at DESC, id DESC LIMIT ?",
        (FileStatus.ERROR, limit),
    ).fetchall()
    return [
        {
            "file_id": r[0],
            "path": r[1],
            "error": r[2],
            "at": iso(_parse(r[3])) if r[3] else None,
        }
        for r in rows
    ]


def dedup_counts(snap: stats.Snapshot | None = None) -> dict[str, int]:
    """{seen, hashed, unique, duplicates, near_duplicates, errors} for the dedup status."""
    snap = snap or counters()
    by_status = file_counts(snap)
    return {
        "seen": sum(by_status.values()),
        "hashed": hashed_count(snap),
        "unique": sum(by_status.get(s, 0) for s in FileStatus.ACCEPTED),
        "duplicates": by_status.get(FileStatus.DUPLICATE, 0),
        "near_duplicates": near_duplicate_count(snap),
        "errors": by_status.get(FileStatus.ERROR, 0),
    }


def sort_counts(snap: stats.Snapshot | None = None) -> dict[str, int]:
    """{sorted, pending, errors} for the sort status; errors: the sort's failures.

    The error count reads ERROR rows only (index on status).
    """
    snap = snap or counters()
    errors = database_proxy.execute_sql(
        "SELECT COUNT(*) FROM files WHERE status = ? AND (error_stage = 'sort'"
        " OR (error_stage IS NULL AND error LIKE 'sort:%'))",
        (FileStatus.ERROR,),
    ).fetchone()[0]
    return {
        "sorted": snap.n(stats.FILE_STATUS, FileStatus.SORTED),
        "pending": sum(snap.n(stats.FILE_STATUS, s) for s in TO_SORT),
        "errors": int(errors),
    }


def summary(now: datetime | None = None, batch: Any | None = None) -> dict[str, Any]:
    """Counts for `media-pipeline status` and the dashboard, from one counter read."""
    snap = counters()
    files = file_counts(snap)
    batches = batch_counts(snap)
    out: dict[str, Any] = {
        "files": {"total": sum(files.values()), "by_status": files},
        "near_duplicates": near_duplicate_count(snap),
        "capture_sources": capture_sources(snap),
        "mtime_dated": mtime_dated(snap),
        "batches": {"total": sum(batches.values()), "by_status": batches},
        "recent_errors": recent_errors(),
    }
    if now is not None:
        out["waiting"] = waiting(now, batch)
    return out
