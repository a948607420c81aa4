"""Status summaries read from the counters: waiting files, mtime-dated files, sort counts."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from pipeline import status
from pipeline.models import Batch, File, FileStatus, utcnow

GB = 1024**3


def add(ctx: Any, name: str, state: str, size: int = 100, **kw: Any) -> int:
    return ctx.writer.call(
        lambda: File.create(
            original_path=f"/in/{name}",
            rel_path=name,
            current_path=f"/in/{name}",
            size=size,
            status=state,
            **kw,
        ).id
    )


def settings(**kw: Any) -> SimpleNamespace:
    base = {"max_size_gb": 1, "max_age_seconds": 3600, "auto_create": True}
    return SimpleNamespace(**(base | kw))


def test_waiting_files_and_when_the_next_batch_comes(ctx: Any) -> None:
    now = utcnow()
    assert status.waiting(now, settings()) == {
        "files": 0,
        "bytes": 0,
        "next_batch_at": None,
        "max_bytes": GB,
    }
    oldest = now - timedelta(minutes=20)
    add(ctx, "a.jpg", "UNIQUE", 300, updated_at=oldest)
    add(ctx, "b.jpg", "UNIQUE", 200, updated_at=now)
    batch = ctx.writer.call(lambda: Batch.create(name="batch_000001").id)
    add(ctx, "in-batch.jpg", "UNIQUE", 5000, batch=batch)  # being built: not waiting
    add(ctx, "sorted.jpg", "SORTED", 7000)
    wait = status.waiting(now, settings())
    assert (wait["files"], wait["bytes"]) == (2, 500)
    due = datetime.fromisoformat(wait["next_batch_at"].removesuffix("Z"))
    assert due == oldest + timedelta(hours=1)
    # Enough bytes wait: the next batch is due now.
    full = status.waiting(now, settings(max_size_gb=400 / GB))
    assert full["next_batch_at"] == now.isoformat() + "Z"
    # Without automatic batches nothing is due by itself.
    assert status.waiting(now, settings(auto_create=False))["next_batch_at"] is None
    assert status.waiting(now)["max_bytes"] is None


def test_mtime_dated_files_and_capture_sources(ctx: Any) -> None:
    add(ctx, "a.jpg", "SORTED", capture_source="exif")
    add(ctx, "b.jpg", "SORTED", capture_source="mtime")
    c = add(ctx, "c.jpg", "SORTED", capture_source="mtime")
    add(ctx, "d.jpg", "UNIQUE")
    assert status.capture_sources() == {"exif": 1, "mtime": 2}
    assert status.mtime_dated() == 2
    ctx.writer.call(
        lambda: File.update(capture_source="filename").where(File.id == c).execute()
    )
    assert status.mtime_dated() == 1
    summary = status.summary(utcnow(), settings())
    assert summary["mtime_dated"] == 1 and summary["waiting"]["files"] == 1


def test_counts_include_statuses_added_later(ctx: Any) -> None:
    add(ctx, "a.jpg", "SKIPPED", 10)
    add(ctx, "b.jpg", "MISSING", 20)
    add(ctx, "c.jpg", "CORRUPT", 30)
    add(ctx, "d.jpg", "ERROR", error="sort: target not writable")
    add(ctx, "e.jpg", "ERROR", error="hash: unreadable")
    add(ctx, "f.jpg", "SYNCED")
    add(ctx, "g.jpg", "ERROR", error="permission denied", error_stage="sort")
    counts = status.file_counts()
    assert (counts["SKIPPED"], counts["MISSING"], counts["CORRUPT"]) == (1, 1, 1)
    sizes = {"SKIPPED": 10, "ERROR": 300, "MISSING": 20}
    inbox = sum(v for k, v in sizes.items() if k in FileStatus.IN_INBOX)
    assert status.storage_bytes()["inbox"] == inbox  # ERROR (and SKIPPED) stay put
    assert status.sort_counts() == {"sorted": 0, "pending": 1, "errors": 2}
    assert status.dedup_counts()["errors"] == 3
    assert [e["error"] for e in status.recent_errors()] == [
        "permission denied",
        "hash: unreadable",
        "sort: target not writable",
    ]
