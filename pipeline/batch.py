"""Batches: UNIQUE files, oldest first, up to batch.max_size_gb, in batch_dir/batch_NNNNNN.

A batch is BUILDING while its files move in; `manifest.json` and `SHA256SUMS` are
written atomically before it becomes CREATED. A crash while BUILDING is finished by
`resume_building` (run at start and before every new batch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline import status
from pipeline.context import Context
from pipeline.failures import record_failure
from pipeline.fsops import (
    TEMP_PREFIX,
    MoveRequest,
    remove_empty_tree,
    split_suffix,
    write_atomic,
)
from pipeline.models import Batch, BatchStatus, File, FileStatus, iso, utcnow
from pipeline.store import db_conn, set_batch_status

BUILDING = BatchStatus.BUILDING  # kept: older imports name it here
MANIFEST = "manifest.json"
SUMS = "SHA256SUMS"
GB = status.GB  # one definition of the unit


def due_in(ctx: Context) -> float | None:
    """Seconds until the oldest waiting file reaches batch.max_age_seconds.

    0 when a batch is due now (old or full enough), None when nothing waits. The
    timer uses it to wake up on time instead of at its next round.
    """
    now = ctx.clock()
    due = status.next_batch_due(status.waiting_totals(), now, ctx.settings.batch)
    return None if due is None else max(0.0, (due - now).total_seconds())


def pick_files(limit_bytes: int) -> list[File]:
    """UNIQUE files oldest first until the next would pass the limit (at least one)."""
    chosen: list[File] = []
    total = 0
    query = (
        File.select()
        .where(File.status == FileStatus.UNIQUE, File.batch.is_null())
        .order_by(File.updated_at, File.id)
    )
    for row in query.iterator():
        size = row.size or 0
        if chosen and total + size > limit_bytes:
            break
        chosen.append(row)
        total += size
        if total >= limit_bytes:
            break
    return chosen


def create_batch(ctx: Context, max_size_gb: float | None = None) -> Batch | None:
    """Make one batch now; None when nothing waits (never an empty batch)."""
    limit = int((max_size_gb or ctx.settings.batch.max_size_gb) * GB)
    with ctx.shared.batch_lock:
        resume_building(ctx)
        files = pick_files(limit)
        if not files:
            return None
        batch = ctx.writer.call(lambda: _claim(files), durable=True)
        return _build(ctx, batch)


def auto_create(ctx: Context) -> list[Batch]:
    """Full batches while the waiting bytes reach the limit, then one for old files."""
    made: list[Batch] = []
    limit = ctx.settings.batch.max_size_gb * GB
    while True:
        now = ctx.clock()
        totals = status.waiting_totals()
        due = status.next_batch_due(totals, now, ctx.settings.batch)
        if due is None or due > now:
            return made
        full = totals[1] >= limit
        batch = create_batch(ctx)
        if batch is None:
            return made
        made.append(batch)
        if not full:
            return made


def _claim(files: list[File]) -> Batch:
    """On the writer thread: a BUILDING batch owning `files`."""
    last = Batch.select(Batch.id).order_by(Batch.id.desc()).first()
    number = (last.id if last else 0) + 1
    batch = Batch.create(id=number, name=f"batch_{number:06d}", status=BUILDING)
    ids = [f.id for f in files]
    File.update(batch=batch.id, updated_at=utcnow()).where(
        File.id.in_(ids), File.status == FileStatus.UNIQUE, File.batch.is_null()
    ).execute()
    return batch


def resume_building(ctx: Context) -> list[Batch]:
    """Finish every batch a crash left BUILDING."""
    done = []
    for batch in Batch.select().where(Batch.status == BUILDING):
        logger.bind(event="batch", batch_id=batch.id).info("resuming {}", batch.name)
        finished = _build(ctx, batch)
        if finished is not None:
            done.append(finished)
    return done


def folder_of(ctx: Context, batch: Batch) -> Path:
    return ctx.roots.batch_dir / batch.name


def location_of(ctx: Context, batch: Batch) -> Path:
    """Where the batch folder is now (batch_dir, then sync_dir once handed over)."""
    return Path(batch.location) if batch.location else folder_of(ctx, batch)


def _build(ctx: Context, batch: Batch) -> Batch | None:
    folder = folder_of(ctx, batch)
    log = logger.bind(event="batch", batch_id=batch.id)
    pending = list(
        File.select().where(File.batch == batch.id, File.status == FileStatus.UNIQUE)
    )
    requests = [
        MoveRequest(
            Path(f.current_path),
            place(folder, f.rel_path),
            f.id,
            FileStatus.BATCHED,
            f.sha256,
        )
        for f in pending
    ]
    for result in ctx.mover.move_many(requests):
        if not result.ok:
            # Out of the batch, back where it was: a retry makes it UNIQUE again.
            record_failure(
                ctx,
                result.request.file_id,
                "batch",
                result.error or "move failed",
                result.errno,
                only_from=(FileStatus.UNIQUE, FileStatus.ERROR),
                batch=None,
            )
    members = list(File.select().where(File.batch == batch.id).order_by(File.id))
    if not members:
        ctx.writer.call(lambda: Batch.delete_by_id(batch.id))
        remove_empty_tree(folder)
        log.info("{} dropped: none of its files could be moved in", batch.name)
        return None
    manifest = write_manifest(folder, batch, members)
    ctx.writer.call(lambda: _created(batch.id, folder, manifest))
    log.bind(status=BatchStatus.CREATED).info(
        "{} created: {} files, {} bytes",
        batch.name,
        manifest["file_count"],
        manifest["size_bytes"],
    )
    return Batch.get_by_id(batch.id)


def place(folder: Path, rel_path: str) -> Path:
    """Where a file goes in the batch folder: never on the batch's own file names.

    The manifest is written (replaced) after the files are in: a `manifest.json` or
    `SHA256SUMS` from the top of the inbox gets `_1` instead, as on any name clash.
    """
    if rel_path in (MANIFEST, SUMS):
        stem, suffix = split_suffix(rel_path)
        rel_path = f"{stem}_1{suffix}"
    return folder / rel_path


def _created(batch_id: int, folder: Path, manifest: dict[str, Any]) -> None:
    set_batch_status(
        db_conn(),
        batch_id,
        BatchStatus.CREATED,
        file_count=manifest["file_count"],
        size_bytes=manifest["size_bytes"],
        location=str(folder),
    )


def manifest_entry(folder: Path, row: File) -> dict[str, Any]:
    return {
        "path": Path(row.current_path).relative_to(folder).as_posix(),
        "size": row.size,
        "sha256": row.sha256,
        "capture_time": row.capture_time.isoformat() if row.capture_time else None,
        "original_path": row.original_path,
    }


def write_manifest(folder: Path, batch: Batch, members: list[File]) -> dict[str, Any]:
    """Write manifest.json and SHA256SUMS atomically; returns the manifest."""
    entries = [manifest_entry(folder, m) for m in members]
    manifest = {
        "batch": batch.name,
        "created_at": iso(batch.created_at),
        "file_count": len(entries),
        "size_bytes": sum(e["size"] or 0 for e in entries),
        "files": entries,
    }
    folder.mkdir(parents=True, exist_ok=True)
    _sweep_cut_writes(folder)
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    sums = "".join(sums_line(e["sha256"], e["path"]) for e in entries)
    write_atomic(folder / SUMS, sums)
    return manifest


def _sweep_cut_writes(folder: Path) -> None:
    """Remove the temp files of a manifest write a crash cut short (ours, never user
    bytes), so that the folder holds only the batch and can be handed over whole."""
    for name in (MANIFEST, SUMS):
        for stale in folder.glob(f"{TEMP_PREFIX}*-{name}"):
            if stale.is_file() and not stale.is_symlink():
                stale.unlink(missing_ok=True)


def sums_line(sha256: str, path: str) -> str:
    """One SHA256SUMS line as GNU sha256sum writes it (names with \\ or newline escaped)."""
    if "\\" in path or "\n" in path:
        escaped = path.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{sha256}  {escaped}\n"
    return f"{sha256}  {path}\n"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def batch_dict(batch: Batch) -> dict[str, Any]:
    """A batch as the API shows it (the manifest is added by the detail route)."""
    return {
        "id": batch.id,
        "name": batch.name,
        "status": batch.status,
        "file_count": batch.file_count,
        "size_bytes": batch.size_bytes,
        "progress": round(batch.progress or 0.0, 2),
        "bytes_needed": batch.bytes_needed,
        "location": batch.location,
        "created_at": iso(batch.created_at),
        "synced_at": iso(batch.synced_at),
        "sorted_at": iso(batch.sorted_at),
        "last_error": batch.last_error,
    }


def timer_interval(max_age_seconds: float) -> float:
    """How often the auto-batch timer looks: often enough to honour max_age_seconds."""
    return max(1.0, min(30.0, max_age_seconds / 10))
