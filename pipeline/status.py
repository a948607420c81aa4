"""Read-only summaries of the database, shared by the CLI, API, dashboard and metrics."""

from __future__ import annotations

from typing import Any

from peewee import fn

from pipeline.models import Batch, BatchStatus, File, FileStatus, iso


def file_counts() -> dict[str, int]:
    """Files by status, every status present (0 when none)."""
    counts = dict.fromkeys(FileStatus.ALL, 0)
    query = File.select(File.status, fn.COUNT(File.id).alias("n")).group_by(File.status)
    for row in query:
        counts[row.status] = row.n
    return counts


def batch_counts() -> dict[str, int]:
    counts = dict.fromkeys(BatchStatus.ALL, 0)
    query = Batch.select(Batch.status, fn.COUNT(Batch.id).alias("n")).group_by(
        Batch.status
    )
    for row in query:
        counts[row.status] = counts.get(row.status, 0) + row.n
    return counts


def near_duplicate_count() -> int:
    return File.select().where(File.near_duplicate_of.is_null(False)).count()


def recent_errors(limit: int = 10) -> list[dict[str, Any]]:
    rows = (
        File.select()
        .where(File.status == FileStatus.ERROR)
        .order_by(File.updated_at.desc(), File.id.desc())
        .limit(limit)
    )
    return [
        {
            "file_id": r.id,
            "path": r.current_path,
            "error": r.error,
            "at": iso(r.updated_at),
        }
        for r in rows
    ]


def summary() -> dict[str, Any]:
    """Counts for `media-pipeline status` and the dashboard."""
    files = file_counts()
    return {
        "files": {"total": sum(files.values()), "by_status": files},
        "near_duplicates": near_duplicate_count(),
        "batches": {"total": Batch.select().count(), "by_status": batch_counts()},
        "recent_errors": recent_errors(),
    }
