"""Handing batches to Syncthing and following them until every required device holds them.

`start_sync` moves a CREATED batch folder into `paths.sync_dir` (file by file through
fsops), marks it SYNCING and asks Syncthing to rescan it. `poll` checks every SYNCING
batch with `sync_check.check_batch` and marks it SYNCED only when that check confirms.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.batch import MANIFEST, SUMS
from pipeline.context import Context
from pipeline.fsops import MoveRequest, remove_empty_tree
from pipeline.models import Batch, BatchStatus, File, FileStatus, utcnow
from pipeline.sync_check import BatchFile, check_batch, required_devices
from pipeline.syncthing import (
    SyncthingError,
    SyncthingStarting,
    SyncthingUnauthorized,
)

_lock = threading.Lock()
RESCAN_AFTER_SECONDS = 60.0


class SyncDisabled(Exception):
    """Syncthing is switched off in the config."""


class NotReady(Exception):
    """The batch asked for cannot be handed to Syncthing in its current state."""


class UnsafeFolder(NotReady):
    """The Syncthing folder would let a remote device change or delete a batch here."""


def start_sync(ctx: Context, batch_id: int | None = None) -> list[Batch]:
    """Move CREATED batches (or just `batch_id`) into the Syncthing folder.

    Raises UnsafeFolder (and records it on the batches, which stay where they are)
    unless the Syncthing folder is Send Only.
    """
    if ctx.syncthing is None:
        raise SyncDisabled("Syncthing is disabled (syncthing.enabled: false)")
    with _lock:
        batches = _startable(batch_id)
        if batches:
            _ensure_send_only(ctx, batches)
        return [_hand_over(ctx, b) for b in batches]


def _ensure_send_only(ctx: Context, batches: list[Batch]) -> None:
    # Any other type carries a deletion made on a remote device into sync_dir: the
    # batch, not yet sorted, would be gone here too. Syncthing's default type is
    # Send & Receive, so this is the mistake to expect.
    folder_id = ctx.settings.syncthing.folder_id
    ids = [b.id for b in batches]
    try:
        kind = str(ctx.syncthing.folder(folder_id).get("type") or "of unknown type")
    except SyncthingError as exc:
        reason = describe(exc)
        ctx.writer.call(lambda: _set_many(ids, last_error=reason))
        raise
    if kind == "sendonly":
        return
    message = (
        f"Syncthing folder {folder_id!r} is {kind}, not Send Only: a deletion on a "
        "remote device would delete batches here before they are sorted. Set its "
        "Folder Type to Send Only (docs/OPERATIONS.md); the batches wait meanwhile"
    )
    ctx.writer.call(lambda: _set_many(ids, last_error=message))
    logger.bind(event="sync", status="refused").error("{}", message)
    raise UnsafeFolder(message)


def describe(exc: SyncthingError) -> str:
    """What a batch's `last_error` says about a failed Syncthing call."""
    if isinstance(exc, SyncthingUnauthorized):
        code = f"HTTP {exc.status_code}" if exc.status_code else "refused"
        return f"Syncthing rejected the API key ({code}): check syncthing.api_key"
    return f"Syncthing: {exc}"


def _startable(batch_id: int | None) -> list[Batch]:
    if batch_id is None:
        return list(
            Batch.select().where(Batch.status == BatchStatus.CREATED).order_by(Batch.id)
        )
    batch = Batch.get_or_none(Batch.id == batch_id)
    if batch is None:
        raise LookupError(f"no batch with id {batch_id}")
    if batch.status != BatchStatus.CREATED:
        raise NotReady(
            f"{batch.name} is {batch.status}; only CREATED batches can be started"
        )
    return [batch]


def _hand_over(ctx: Context, batch: Batch) -> Batch:
    src_folder = ctx.roots.batch_dir / batch.name
    dst_folder = ctx.roots.sync_dir / batch.name
    log = logger.bind(event="sync", batch_id=batch.id)
    members = File.select().where(
        File.batch == batch.id, File.status == FileStatus.BATCHED
    )
    requests = [
        MoveRequest(
            Path(f.current_path),
            dst_folder / Path(f.current_path).relative_to(src_folder),
            f.id,
        )
        for f in members
        if Path(f.current_path).is_relative_to(src_folder)
    ]
    requests += [
        MoveRequest(src_folder / name, dst_folder / name)
        for name in (MANIFEST, SUMS)
        if (src_folder / name).exists()
    ]
    failed = [r for r in ctx.mover.move_many(requests) if not r.ok]
    if failed:
        message = f"{len(failed)} files could not be moved to the sync folder: {failed[0].error}"
        ctx.writer.call(lambda: _set(batch.id, last_error=message))
        log.error("{}: {}", batch.name, message)
        return Batch.get_by_id(batch.id)
    remove_empty_tree(src_folder)
    ctx.writer.call(
        lambda: _set(
            batch.id,
            status=BatchStatus.SYNCING,
            location=str(dst_folder),
            last_error=None,
        )
    )
    log.bind(status=BatchStatus.SYNCING).info(
        "{} moved into the Syncthing folder", batch.name
    )
    _request_scan(ctx, batch)
    return Batch.get_by_id(batch.id)


def _set(batch_id: int, **values: Any) -> None:
    _set_many([batch_id], **values)


def _set_many(batch_ids: list[int], **values: Any) -> None:
    Batch.update(updated_at=utcnow(), **values).where(Batch.id.in_(batch_ids)).execute()


_last_scan: dict[int, float] = {}


def _request_scan(ctx: Context, batch: Batch) -> None:
    """Ask Syncthing to rescan the batch; a failure is recorded, the poll retries."""
    _last_scan[batch.id] = time.monotonic()
    try:
        ctx.syncthing.scan(ctx.settings.syncthing.folder_id, sub=batch.name)
    except SyncthingError as exc:
        message = f"rescan failed: {exc}"
        ctx.writer.call(lambda: _set(batch.id, last_error=message))
        logger.bind(event="sync", batch_id=batch.id).warning(
            "rescan of {} failed: {}", batch.name, exc
        )


def batch_files(batch: Batch, folder: Path) -> list[BatchFile]:
    rows = File.select(File.current_path, File.size).where(File.batch == batch.id)
    files = []
    for row in rows:
        path = Path(row.current_path)
        if path.is_relative_to(folder):
            files.append(BatchFile(path.relative_to(folder).as_posix(), row.size or 0))
    return files


def poll(ctx: Context) -> str:
    """Check every SYNCING batch once; returns Syncthing's state for /health."""
    if ctx.syncthing is None:
        return "disabled"
    state = "ok"
    for batch in (
        Batch.select().where(Batch.status == BatchStatus.SYNCING).order_by(Batch.id)
    ):
        try:
            check_one(ctx, batch)
        except SyncthingError as exc:
            message = describe(exc)
            ctx.writer.call(lambda b=batch, m=message: _set(b.id, last_error=m))
            if isinstance(exc, SyncthingUnauthorized):
                return "unauthorized"
            state = "starting" if isinstance(exc, SyncthingStarting) else "unreachable"
            break
    if state == "ok":
        state = ctx.syncthing.health()
    return state


def check_one(ctx: Context, batch: Batch) -> bool:
    """Update one batch's progress; True when it is now SYNCED."""
    st = ctx.settings.syncthing
    folder = ctx.roots.sync_dir / batch.name
    files = batch_files(batch, folder)
    devices = required_devices(ctx.syncthing, st.folder_id, st.device_ids)
    verdict = check_batch(ctx.syncthing, st.folder_id, batch.name, files, devices)
    log = logger.bind(event="sync", batch_id=batch.id)
    if not verdict.synced:
        ctx.writer.call(
            lambda: _set(
                batch.id,
                progress=verdict.progress,
                bytes_needed=verdict.bytes_needed,
                last_error=verdict.detail or None,
            )
        )
        if time.monotonic() - _last_scan.get(batch.id, 0) > RESCAN_AFTER_SECONDS:
            _request_scan(ctx, batch)
        log.debug("{} not yet synced: {}", batch.name, verdict.detail)
        return False
    ctx.writer.call(lambda: _mark_synced(batch.id, verdict.bytes_total))
    log.bind(status=BatchStatus.SYNCED).info(
        "{} is held by every required device", batch.name
    )
    return True


def _mark_synced(batch_id: int, total: int) -> None:
    now = utcnow()
    _set(
        batch_id,
        status=BatchStatus.SYNCED,
        synced_at=now,
        progress=100.0,
        bytes_needed=0,
        last_error=None,
    )
    File.update(status=FileStatus.SYNCED, updated_at=now).where(
        File.batch == batch_id, File.status == FileStatus.BATCHED
    ).execute()


def sync_status() -> list[dict[str, Any]]:
    """Batches on their way through Syncthing (and recently synced ones)."""
    rows = (
        Batch.select()
        .where(
            Batch.status.in_(
                (
                    BatchStatus.CREATED,
                    BatchStatus.SYNCING,
                    BatchStatus.SYNCED,
                    BatchStatus.ERROR,
                )
            )
        )
        .order_by(Batch.id)
    )
    return [
        {
            "id": b.id,
            "name": b.name,
            "status": b.status,
            "progress": round(b.progress or 0.0, 2),
            "bytes_total": b.size_bytes,
            "bytes_needed": b.size_bytes if b.bytes_needed is None else b.bytes_needed,
            "last_error": b.last_error,
        }
        for b in rows
    ]
