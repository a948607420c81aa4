"""The numbers behind GET /api/dashboard (and the HTML dashboard), fast on big libraries.

Counts and storage come from the trigger-kept counters; files per hour reads the
index on `created_at` over the last 24 hours only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pipeline import status, verify
from pipeline.models import FileStatus, database_proxy, sql_time


def files_per_hour(now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """Files first seen in each of the last `hours` hours (UTC), oldest first, zeros kept."""
    start = (now - timedelta(hours=hours - 1)).replace(
        minute=0, second=0, microsecond=0
    )
    # Only created_at is read: the index on it covers the query.
    rows = database_proxy.execute_sql(
        "SELECT strftime('%Y-%m-%dT%H:00:00', created_at) AS hour, COUNT(*)"
        " FROM files WHERE created_at >= ? GROUP BY hour",
        (sql_time(start),),
    ).fetchall()
    counts = dict(rows)
    out = []
    for n in range(hours):
        hour = (start + timedelta(hours=n)).strftime("%Y-%m-%dT%H:00:00")
        out.append({"hour": hour + "Z", "count": counts.get(hour, 0)})
    return out


def dashboard(now: datetime, batch: Any | None = None) -> dict[str, Any]:
    """Everything GET /api/dashboard answers; `batch` is the `batch` settings section.

    `waiting` is what waits for a batch and when the next one is due (None without
    `batch`); `capture_sources` counts files by where their date came from, and
    `mtime_dated` is how many of them only have the file's mtime as a date.
    """
    snap = status.counters()
    files = status.file_counts(snap)
    batches = status.batch_counts(snap)
    return {
        "files": {"total": sum(files.values()), "by_status": files},
        "unique": sum(files.get(s, 0) for s in FileStatus.ACCEPTED),
        "duplicates": files.get(FileStatus.DUPLICATE, 0),
        "near_duplicates": status.near_duplicate_count(snap),
        "batches": {"total": sum(batches.values()), "by_status": batches},
        "storage": status.storage_bytes(snap),
        "waiting": status.waiting(now, batch),
        "capture_sources": status.capture_sources(snap),
        "mtime_dated": status.mtime_dated(snap),
        "recent_errors": status.recent_errors(),
        "files_per_hour": files_per_hour(now),
        "last_verify": verify.last_run(),
    }
