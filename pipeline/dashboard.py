"""The numbers behind GET /api/dashboard, from the database only (fast on big libraries)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from peewee import JOIN, fn

from pipeline import status
from pipeline.models import Batch, BatchStatus, File, FileStatus


def storage_bytes() -> dict[str, int]:
    """Bytes of tracked files in each folder, by where their status says they are."""

    def total(query: Any) -> int:
        return int(query.scalar() or 0)

    size = fn.COALESCE(fn.SUM(File.size), 0)
    in_batch = File.select(size).join(Batch, JOIN.INNER, on=(File.batch == Batch.id))
    return {
        "inbox": total(File.select(size).where(File.status.in_(FileStatus.IN_INBOX))),
        "duplicates_dir": total(
            File.select(size).where(File.status == FileStatus.DUPLICATE)
        ),
        "batch_dir": total(
            in_batch.where(
                File.status == FileStatus.BATCHED, Batch.status == BatchStatus.CREATED
            )
        ),
        "sync_dir": total(
            in_batch.where(
                File.status.in_((FileStatus.BATCHED, FileStatus.SYNCED)),
                Batch.status.in_((BatchStatus.SYNCING, BatchStatus.SYNCED)),
            )
        ),
        "sorted_dir": total(File.select(size).where(File.status == FileStatus.SORTED)),
    }


def files_per_hour(now: datetime, hours: int = 24) -> list[dict[str, Any]]:
    """Files first seen in each of the last `hours` hours (UTC), oldest first, zeros kept."""
    start = (now - timedelta(hours=hours - 1)).replace(
        minute=0, second=0, microsecond=0
    )
    bucket = fn.strftime("%Y-%m-%dT%H:00:00", File.created_at)
    rows = (
        File.select(bucket.alias("hour"), fn.COUNT(File.id).alias("n"))
        .where(File.created_at >= start)
        .group_by(bucket)
        .tuples()
    )
    counts = dict(rows)
    out = []
    for n in range(hours):
        hour = (start + timedelta(hours=n)).strftime("%Y-%m-%dT%H:00:00")
        out.append({"hour": hour + "Z", "count": counts.get(hour, 0)})
    return out


def dashboard(now: datetime) -> dict[str, Any]:
    base = status.summary()
    by_status = base["files"]["by_status"]
    return {
        "files": base["files"],
        "unique": sum(by_status[s] for s in FileStatus.ACCEPTED),
        "duplicates": by_status[FileStatus.DUPLICATE],
        "near_duplicates": base["near_duplicates"],
        "batches": base["batches"],
        "storage": storage_bytes(),
        "recent_errors": base["recent_errors"],
        "files_per_hour": files_per_hour(now),
    }
