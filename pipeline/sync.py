"""Handing batches to Syncthing and following them until every required device holds them.

`prepare_start` checks, quickly and without waiting on Syncthing's scans, what a
hand-over would do (for an API answer); `sync_job` does it: moves CREATED batch
folders into `paths.sync_dir` (file by file through fsops), marks them SYNCING and asks
Syncthing to rescan them, and rescans batches the poll found missing from the local
index. Scans can take minutes (or hang), so they run only there, on the job's thread,
outside the hand-over lock. `poll` checks every SYNCING batch with
`sync_check.check_batch` and marks it SYNCED only when that check confirms; it never
takes the lock and never waits on a scan.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.batch import MANIFEST, SUMS
from pipeline.context import Context
from pipeline.fsops import MoveRequest, remove_empty_tree
from pipeline.jobs import JobHandle
from pipeline.models import Batch, BatchStatus, File, FileStatus, utcnow
from pipeline.store import db_conn, move_files, set_batch_status
from pipeline.sync_check import BatchFile, check_batch, required_devices
from pipeline.syncthing import (
    SyncthingClient,
    SyncthingError,
    SyncthingStarting,
    SyncthingUnauthorized,
)

RESCAN_AFTER_SECONDS = 60.0
# The longest an API request waits for Syncthing (the folder-type check).
QUICK_TIMEOUT = 5.0


class SyncDisabled(Exception):
    """Syncthing is switched off in the config."""


class NotReady(Exception):
    """The batch asked for cannot be handed to Syncthing in its current state."""


class UnsafeFolder(NotReady):
    """The Syncthing folder would let a remote device change or delete a batch here."""


def prepare_start(ctx: Context, batch_id: int | None = None) -> list[Batch]:
    """What a hand-over would move now, checked without waiting on a scan or the lock.

    Raises SyncDisabled, LookupError (unknown `batch_id`), NotReady (not CREATED),
    UnsafeFolder (recorded on the batches) or SyncthingError (the folder type could
    not be read with one quick call, `QUICK_TIMEOUT` at most).
    """
    _require_enabled(ctx)
    batches = _startable(batch_id)
    if batches:
        _ensure_send_only(ctx, batches, quick=True)
    return batches


def start_sync(ctx: Context, batch_id: int | None = None) -> list[Batch]:
    """Hand over CREATED batches (or just `batch_id`) and rescan them, on this thread.

    What `sync_job` runs; blocks for as long as Syncthing's scans take. Raises like
    `prepare_start`; the batches stay where they are unless the folder is Send Only.
    """
    moved = hand_over(ctx, batch_id)
    for batch in moved:
        if batch.status == BatchStatus.SYNCING:
            _request_scan(ctx, batch)
    return [Batch.get_by_id(b.id) for b in moved]


def hand_over(ctx: Context, batch_id: int | None = None) -> list[Batch]:
    """Move CREATED batches (or just `batch_id`) into the Syncthing folder; no scan.

    Raises UnsafeFolder (and records it on the batches, which stay where they are)
    unless the Syncthing folder is Send Only. Holds the hand-over lock for the moves
    only.
    """
    _require_enabled(ctx)
    with ctx.shared.sync_lock:
        batches = _startable(batch_id)
        if batches:
            _ensure_send_only(ctx, batches)
        return [_hand_over(ctx, b) for b in batches]


def sync_job(
    ctx: Context, handle: JobHandle, batch_id: int | None = None, move: bool = True
) -> dict[str, Any]:
    """The `sync` job: hand over (when `move`), then rescan, reporting progress.

    Rescans the batches just handed over and the SYNCING ones the poll found
    missing from the local index (`rescans_due`). Its result lists both.
    """
    moved = hand_over(ctx, batch_id) if move else []
    handed = [b for b in moved if b.status == BatchStatus.SYNCING]
    due = _due_for_rescan(ctx, exclude={b.id for b in handed})
    handle.set_total(len(moved) + len(handed) + len(due))
    handle.advance(len(handed), len(moved) - len(handed))
    for batch in [*handed, *due]:
        failed = not _request_scan(ctx, batch)
        handle.advance(0 if failed else 1, 1 if failed else 0)
    names = ", ".join(b.name for b in handed) or "none"
    return {
        "handed_over": [b.id for b in handed],
        "not_moved": [b.id for b in moved if b.status != BatchStatus.SYNCING],
        "rescanned": [b.id for b in [*handed, *due]],
        "message": f"handed over to Syncthing: {names}; {len(due)} batch(es) rescanned",
    }


def rescans_due(ctx: Context) -> bool:
    """True when the poll found a SYNCING batch Syncthing has not indexed yet."""
    return bool(ctx.shared.rescans_due)


def _due_for_rescan(ctx: Context, exclude: set[int]) -> list[Batch]:
    due = ctx.shared.rescans_due
    ids = [i for i in sorted(due) if i not in exclude]
    if not ids:
        return []
    rows = Batch.select().where(Batch.id.in_(ids), Batch.status == BatchStatus.SYNCING)
    found = list(rows.order_by(Batch.id))
    due.difference_update(ids)
    return found


def _require_enabled(ctx: Context) -> SyncthingClient:
    """The Syncthing client; raises SyncDisabled when there is none."""
    if ctx.syncthing is None:
        raise SyncDisabled("Syncthing is disabled (syncthing.enabled: false)")
    return ctx.syncthing


def _ensure_send_only(ctx: Context, batches: list[Batch], quick: bool = False) -> None:
    # Any other type carries a deletion made on a remote device into sync_dir: the
    # batch, not yet sorted, would be gone here too. Syncthing's default type is
    # Send & Receive, so this is the mistake to expect.
    st = ctx.settings.syncthing
    folder_id = st.folder_id
    ids = [b.id for b in batches]
    # An API answer waits for one short call at most, never the client's retries.
    client = _require_enabled(ctx)
    try:
        if quick:
            timeout = min(st.timeout_seconds, QUICK_TIMEOUT)
            answer = client.folder(folder_id, timeout=timeout, retries=0)
        else:
            answer = client.folder(folder_id)
        kind = str(answer.get("type") or "of unknown type")
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
        lambda: set_batch_status(
            db_conn(),
            batch.id,
            BatchStatus.SYNCING,
            location=str(dst_folder),
            last_error=None,
        )
    )
    log.bind(status=BatchStatus.SYNCING).info(
        "{} moved into the Syncthing folder", batch.name
    )
    return Batch.get_by_id(batch.id)


def _set(batch_id: int, **values: Any) -> None:
    _set_many([batch_id], **values)


def _set_many(batch_ids: list[int], **values: Any) -> None:
    Batch.update(updated_at=utcnow(), **values).where(Batch.id.in_(batch_ids)).execute()


def _request_scan(ctx: Context, batch: Batch) -> bool:
    """Ask Syncthing to rescan the batch; a failure is recorded, the poll retries."""
    ctx.shared.rescanned_at[batch.id] = time.monotonic()
    try:
        _require_enabled(ctx).scan(ctx.settings.syncthing.folder_id, sub=batch.name)
    except SyncthingError as exc:
        message = f"rescan failed: {exc}"
        ctx.writer.call(lambda: _set(batch.id, last_error=message))
        logger.bind(event="sync", batch_id=batch.id).warning(
            "rescan of {} failed: {}", batch.name, exc
        )
        return False
    return True


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
    client = ctx.syncthing
    if client is None:
        return "disabled"
    state = "ok"
    devices: list[str] | None = None
    for batch in (
        Batch.select().where(Batch.status == BatchStatus.SYNCING).order_by(Batch.id)
    ):
        try:
            if devices is None:  # asked once per poll, shared by every batch
                st = ctx.settings.syncthing
                devices = required_devices(client, st.folder_id, st.device_ids)
            check_one(ctx, batch, devices)
        except SyncthingError as exc:
            message = describe(exc)
            ctx.writer.call(partial(_set, batch.id, last_error=message))
            if isinstance(exc, SyncthingUnauthorized):
                return "unauthorized"
            state = "starting" if isinstance(exc, SyncthingStarting) else "unreachable"
            break
    if state == "ok":
        state = client.health()
    return state


def check_one(ctx: Context, batch: Batch, devices: list[str] | None = None) -> bool:
    """Update one batch's progress; True when it is now SYNCED.

    `devices`: the required devices, when the caller already asked for them.
    """
    st = ctx.settings.syncthing
    client = _require_enabled(ctx)
    folder = ctx.roots.sync_dir / batch.name
    files = batch_files(batch, folder)
    if devices is None:
        devices = required_devices(client, st.folder_id, st.device_ids)
    verdict = check_batch(client, st.folder_id, batch.name, files, devices)
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
        last = ctx.shared.rescanned_at.get(batch.id, -RESCAN_AFTER_SECONDS)
        if not verdict.indexed and time.monotonic() - last > RESCAN_AFTER_SECONDS:
            ctx.shared.rescans_due.add(batch.id)
        log.debug("{} not yet synced: {}", batch.name, verdict.detail)
        return False
    ctx.writer.call(lambda: _mark_synced(batch.id, verdict.bytes_total))
    log.bind(status=BatchStatus.SYNCED).info(
        "{} is held by every required device", batch.name
    )
    return True


def _mark_synced(batch_id: int, total: int) -> None:
    conn = db_conn()
    set_batch_status(
        conn,
        batch_id,
        BatchStatus.SYNCED,
        synced_at=utcnow(),
        progress=100.0,
        bytes_needed=0,
        last_error=None,
    )
    move_files(conn, FileStatus.BATCHED, FileStatus.SYNCED, "batch = ?", (batch_id,))


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
