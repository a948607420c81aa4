"""Series for the dashboard's charts and lists beside the counters of `dashboard()`.

Each query reads a bounded window through an index (`files.created_at`,
`batches.sorted_at`, `jobs.status`), never the whole files table; the web layer
caches the chart series for a minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from peewee import fn

from pipeline.models import (
    Batch,
    BatchStatus,
    File,
    FileStatus,
    Job,
    JobStatus,
    iso,
    tuples,
)

# How a file's status reads on the chart: where it ended up (or not yet).
OUTCOMES: dict[str, tuple[FileStatus, ...]] = {
    "library": (FileStatus.SORTED,),
    "on its way": (
        FileStatus.NEW,
        FileStatus.HASHED,
        FileStatus.UNIQUE,
        FileStatus.BATCHED,
        FileStatus.SYNCED,
    ),
    "duplicate": (FileStatus.DUPLICATE,),
    "needs attention": (FileStatus.ERROR, FileStatus.MISSING, FileStatus.CORRUPT),
    "skipped": (FileStatus.SKIPPED,),
}
OUTCOME_OF = {status: name for name, group in OUTCOMES.items() for status in group}


def _buckets(now: datetime, span: str) -> tuple[datetime, list[str], str, str]:
    """(window start, bucket labels, SQLite strftime pattern, Python pattern)."""
    if span == "day":
        start = (now - timedelta(days=29)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        labels = [(start + timedelta(days=n)).strftime("%Y-%m-%d") for n in range(30)]
        return start, labels, "%Y-%m-%d", "%Y-%m-%d"
    start = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    labels = [(start + timedelta(hours=n)).strftime("%Y-%m-%dT%H") for n in range(24)]
    return start, labels, "%Y-%m-%dT%H", "%Y-%m-%dT%H"


def intake(now: datetime, span: str = "hour") -> dict[str, Any]:
    """Files taken in per hour (24 h) or per day (30 days), stacked by outcome."""
    start, labels, pattern, _ = _buckets(now, span)
    bucket = fn.strftime(pattern, File.created_at)
    rows = tuples(
        File.select(bucket, File.status, fn.COUNT(File.id))
        .where(File.created_at >= start)
        .group_by(bucket, File.status)
    )
    series = {name: dict.fromkeys(labels, 0) for name in OUTCOMES}
    for when, status, count in rows:
        outcome = OUTCOME_OF.get(status, "on its way")
        if when in series[outcome]:
            series[outcome][when] += count
    # Shown as "14:00" (hours) or "03-07" (days); the keys above are full dates.
    shown = [label[-2:] + ":00" if span != "day" else label[5:] for label in labels]
    return {
        "labels": shown,
        "series": {name: list(counts.values()) for name, counts in series.items()},
    }


def library_growth(now: datetime, days: int = 30) -> dict[str, Any]:
    """Files in the library at the end of each of the last `days` days (sorted batches)."""
    start = (now - timedelta(days=days - 1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    before = (
        Batch.select(fn.COALESCE(fn.SUM(Batch.file_count), 0))
        .where(Batch.status == BatchStatus.SORTED, Batch.sorted_at < start)
        .scalar()
    )
    day = fn.strftime("%Y-%m-%d", Batch.sorted_at)
    per_day: dict[str, int] = dict(
        tuples(
            Batch.select(day, fn.SUM(Batch.file_count))
            .where(Batch.status == BatchStatus.SORTED, Batch.sorted_at >= start)
            .group_by(day)
        )
    )
    labels, totals, running = [], [], int(before or 0)
    for n in range(days):
        label = (start + timedelta(days=n)).strftime("%Y-%m-%d")
        running += int(per_day.get(label) or 0)
        labels.append(label[5:])
        totals.append(running)
    return {"labels": labels, "files": totals}


def active_jobs(limit: int = 20) -> list[Job]:
    """Queued and running jobs, oldest first."""
    return list(
        Job.select()
        .where(Job.status.in_(JobStatus.ACTIVE))
        .order_by(Job.id)
        .limit(limit)
    )


def batches_in_flight(limit: int = 50) -> list[Batch]:
    """Batches not yet sorted (being built, in Syncthing, or failed), newest first."""
    return list(
        Batch.select()
        .where(Batch.status != BatchStatus.SORTED)
        .order_by(Batch.id.desc())
        .limit(limit)
    )


def batch_row(batch: Batch) -> dict[str, Any]:
    """A batch as the overview lists it."""
    needed = batch.bytes_needed
    total = batch.size_bytes or 0
    done = batch.status in (BatchStatus.SYNCED, BatchStatus.SORTED)
    percent = 100.0 if done else float(batch.progress or 0.0)
    return {
        "id": batch.id,
        "name": batch.name,
        "status": batch.status,
        "files": batch.file_count,
        "bytes": total,
        "bytes_needed": needed,
        "percent": max(0.0, min(100.0, percent)),
        "created_at": iso(batch.created_at),
        "last_error": batch.last_error,
    }
