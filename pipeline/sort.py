"""Sorting synced batches into sorted_dir/<template> by capture date.

Takes SYNCED batches (or CREATED ones when Syncthing is off). Companions stay
together: a sidecar goes to its media file's folder, and a video with the same stem
as a photo in the batch (a Live Photo pair) follows the photo's date folder. A name
clash with identical content makes the file a DUPLICATE; different content gets
`name_1.ext`, … from fsops. Where each file goes is planned in pipeline/sort_plan.py.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from loguru import logger
from peewee import fn

from pipeline.batch import location_of
from pipeline.context import Context
from pipeline.failures import record_failure
from pipeline.fsops import (
    MoveRequest,
    MoveResult,
    candidate_names,
    sha256_of,
)
from pipeline.jobs import JobHandle
from pipeline.media import is_sidecar
from pipeline.models import (
    Batch,
    BatchStatus,
    File,
    FileStatus,
    database_proxy,
    sql_time,
    utcnow,
)
from pipeline.sort_plan import (
    TO_SORT,
    Member,
    Plan,
    members_to_sort,
    plan_batch,
)
from pipeline.store import db_conn, set_batch_status


def sortable_batches(ctx: Context, batch_id: int | None = None) -> list[Batch]:
    """Batches ready for sorting, oldest first (or just `batch_id` if it is ready)."""
    ready = [BatchStatus.SYNCED]
    if not ctx.settings.syncthing.enabled:
        ready.append(BatchStatus.CREATED)
    # Only batches with a file to sort: one whose files all failed waits for their
    # retries instead of being sorted (and logged) again every few seconds. One with
    # nothing left to sort and nothing failed only needs finishing: a crash came
    # between its last move and the batch's update.
    waiting = File.select(File.id).where(
        File.batch == Batch.id, File.status.in_(TO_SORT)
    )
    failed = File.select(File.id).where(
        File.batch == Batch.id, File.status == FileStatus.ERROR
    )
    query = (
        Batch.select()
        .where(Batch.status.in_(ready), fn.EXISTS(waiting) | ~fn.EXISTS(failed))
        .order_by(Batch.id)
    )
    if batch_id is not None:
        query = query.where(Batch.id == batch_id)
    return list(query)


def identical_at(target: str, row: Member) -> str | None:
    """An existing file at `target` or its `_N` names with the same content, if any."""
    for candidate in candidate_names(target):
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            return None
        if st.st_size == row.size and sha256_of(candidate) == row.sha256:
            return candidate
    return None


def sort_batch(ctx: Context, batch: Batch, dry_run: bool = False) -> dict[str, Any]:
    """Sort one batch; returns counts and, for a dry run, the plan.

    A batch whose folder is gone becomes ERROR (its files stay as they are) until a
    retry request finds it again. A file that cannot be moved becomes ERROR in the
    `sort` stage and the batch stays unsorted, with `last_error`, until it is retried.
    """
    with ctx.shared.sort_lock:
        return _sort_batch(ctx, batch, dry_run)


def _sort_batch(ctx: Context, batch: Batch, dry_run: bool) -> dict[str, Any]:
    members = members_to_sort(batch.id)
    if not dry_run and _folder_gone(ctx, batch, members):
        return {"batch": batch.name, "sorted": 0, "duplicates": 0, "errors": 1}
    plans = plan_batch(ctx, members)
    folders: dict[str, bool] = {}  # a folder that is not there yet holds no twin
    for plan in plans:
        folder = os.path.dirname(plan.target)
        there = folders.get(folder)
        if there is None:
            there = folders[folder] = os.path.isdir(folder)
        if there and not is_sidecar(plan.path):
            plan.duplicate_of = identical_at(plan.target, plan.row)
    if dry_run:
        return {"batch": batch.name, "planned": [_plan_dict(p) for p in plans]}
    ctx.writer.call(lambda: _record_dates(plans))
    moves = [_request(ctx, p) for p in plans]
    missing = _missing_root(ctx)
    if missing is None:
        results = ctx.mover.move_many(moves)
    else:
        results = [MoveResult(m, None, missing, errno.ENOENT) for m in moves]
    failed = [r for r in results if not r.ok]
    for result in failed:
        record_failure(
            ctx,
            result.request.file_id,
            "sort",
            result.error or "move failed",
            result.errno,
            only_from=(*TO_SORT, FileStatus.ERROR),
        )
    ctx.writer.call(lambda: _finish_batch(batch.id))
    duplicates = sum(1 for p in plans if p.duplicate_of)
    logger.bind(event="sort", batch_id=batch.id).info(
        "{}: {} sorted, {} duplicates, {} errors",
        batch.name,
        len(plans) - duplicates - len(failed),
        duplicates,
        len(failed),
    )
    return {
        "batch": batch.name,
        "sorted": len(plans) - duplicates - len(failed),
        "duplicates": duplicates,
        "errors": len(failed),
    }


def _request(ctx: Context, plan: Plan) -> MoveRequest:
    row = plan.row
    if plan.duplicate_of:
        dst = os.path.join(ctx.roots.duplicates_dir, row.rel_path)
        return MoveRequest(row.path, dst, row.id, FileStatus.DUPLICATE, row.sha256)
    return MoveRequest(row.path, plan.target, row.id, FileStatus.SORTED, row.sha256)


def _record_dates(plans: list[Plan]) -> None:
    """Capture dates (and the library twin of an identical clash) before the moves."""
    now = sql_time(utcnow())
    database_proxy.connection().executemany(
        "UPDATE files SET capture_time = ?, capture_source = ?, target_path = ?,"
        " updated_at = ? WHERE id = ?",
        [(sql_time(p.when), p.source, p.target, now, p.row.id) for p in plans],
    )
    for plan in plans:
        if plan.duplicate_of:
            twin = File.get_or_none(File.current_path == plan.duplicate_of)
            File.update(duplicate_of=twin.id if twin else None).where(
                File.id == plan.row.id
            ).execute()


def _missing_root(ctx: Context) -> str | None:
    """Why nothing can be sorted now: a destination root is gone (an unmounted disk?).

    The mover would create the folder anew, filling the disk under the mount point.
    """
    for root in (ctx.roots.sorted_dir, ctx.roots.duplicates_dir):
        if not os.path.isdir(root):
            return f"destination folder is missing (unmounted?): {root}"
    return None


def _folder_gone(ctx: Context, batch: Batch, members: list[Member]) -> bool:
    """True (and the batch ERROR) when the batch folder and every file to sort are gone."""
    folder = location_of(ctx, batch)
    if not members or folder.is_dir() or any(os.path.lexists(m.path) for m in members):
        return False
    message = f"batch folder is missing: {folder}; restore it, then retry"
    ctx.writer.call(
        lambda: set_batch_status(
            db_conn(),
            batch.id,
            BatchStatus.ERROR,
            error_stage="sort",
            last_error=message,
        )
    )
    logger.bind(event="sort", batch_id=batch.id, status=BatchStatus.ERROR).error(
        "{}: {}", batch.name, message
    )
    return True


def _finish_batch(batch_id: int) -> None:
    """SORTED once every file is SORTED or DUPLICATE; else the failures are shown."""
    conn = db_conn()
    counts = dict(
        conn.execute(
            "SELECT status, COUNT(*) FROM files WHERE batch = ? GROUP BY status",
            (batch_id,),
        ).fetchall()
    )
    if any(counts.get(s) for s in TO_SORT):
        return
    failed = counts.get(FileStatus.ERROR, 0)
    if not failed:
        set_batch_status(
            conn, batch_id, BatchStatus.SORTED, sorted_at=utcnow(), last_error=None
        )
        return
    first = conn.execute(
        "SELECT error FROM files WHERE batch = ? AND status = ? ORDER BY id LIMIT 1",
        (batch_id, FileStatus.ERROR),
    ).fetchone()
    conn.execute(
        "UPDATE batches SET last_error = ?, updated_at = ? WHERE id = ?",
        (
            f"{failed} file(s) could not be sorted (retried automatically or on"
            f" request): {first[0]}",
            sql_time(utcnow()),
            batch_id,
        ),
    )


def _plan_dict(plan: Plan) -> dict[str, Any]:
    return {
        "file_id": plan.row.id,
        "path": plan.path,
        "target": plan.target,
        "capture_time": plan.when.isoformat(),
        "capture_source": plan.source,
        "duplicate_of": plan.duplicate_of,
    }


def sort_job(
    ctx: Context,
    handle: JobHandle,
    batch_id: int | None = None,
    dry_run: bool | None = None,
) -> dict[str, Any]:
    """Sort every ready batch (or one); a job function for pipeline.jobs."""
    dry = ctx.settings.sort.dry_run if dry_run is None else dry_run
    batches = sortable_batches(ctx, batch_id)
    handle.set_total(sum(b.file_count for b in batches))
    reports = []
    for batch in batches:
        report = sort_batch(ctx, batch, dry_run=dry)
        handle.advance(batch.file_count, report.get("errors", 0))
        reports.append(report)
    return {"dry_run": dry, "batches": reports}


def sort_counts() -> dict[str, int]:
    """{sorted, pending, errors} for GET /api/sort/status (from the counters)."""
    from pipeline import status  # a summary module; sorting itself never needs it

    return status.sort_counts()
