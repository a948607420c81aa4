"""Near-duplicate review: groups of flagged images, and the owner's two answers.

A group is an accepted image (the group's file) and the images flagged as resembling
it (`near_duplicate_of`). "keep" clears a flag for good (the pair goes into
`near_keeps`); "duplicate" moves the flagged file to `duplicates_dir` through the
journaled mover, from wherever it is now (inbox, a batch, the Syncthing folder or the
library).
"""

from __future__ import annotations

import os
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from pipeline.context import Context
from pipeline.fsops import MoveError, MoveRequest
from pipeline.models import File, FileStatus, database_proxy, sql_time, utcnow
from pipeline.nearindex import informative

# Where a flagged file can be, and so where "duplicate" may move it from.
MOVABLE = (
    FileStatus.UNIQUE,
    FileStatus.BATCHED,
    FileStatus.SYNCED,
    FileStatus.SORTED,
)
# How long "duplicate" waits for a batch, hand-over or sort that may move the file.
LOCK_WAIT_SECONDS = 30.0


class ReviewError(Exception):
    """The answer cannot be applied now (`code` is an HTTP status: 404 or 409)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Group:
    file: File | None  # None if the resembled file's row is gone
    file_id: int
    members: list[File]


def near_groups(limit: int, after: int = 0) -> tuple[list[Group], int | None]:
    """Up to `limit` groups whose file id is above `after`, and the next `after`.

    Served from the partial index on `near_duplicate_of`: the cost follows the number
    of flagged files on the page, not the size of the library.
    """
    keys = [
        row[0]
        for row in database_proxy.execute_sql(
            "SELECT DISTINCT near_duplicate_of FROM files"
            " WHERE near_duplicate_of > ? ORDER BY near_duplicate_of LIMIT ?",
            (after, limit + 1),
        )
    ]
    more = len(keys) > limit
    keys = keys[:limit]
    if not keys:
        return [], None
    bases = {r.id: r for r in File.select().where(File.id.in_(keys))}
    members: dict[int, list[File]] = {k: [] for k in keys}
    query = (
        File.select()
        .where(File.near_duplicate_of.in_(keys))
        .order_by(File.near_duplicate_of, File.id)
    )
    for row in query:
        if row.near_duplicate_of is not None:  # always: selected by it
            members[row.near_duplicate_of].append(row)
    groups = [Group(bases.get(k), k, members[k]) for k in keys]
    return groups, keys[-1] if more else None


def _flagged(file_id: int) -> tuple[File, int]:
    """The flagged file's row and the id of the file it resembles."""
    row = File.get_or_none(File.id == file_id)
    if row is None:
        raise ReviewError(404, f"no file with id {file_id}")
    if row.near_duplicate_of is None:
        raise ReviewError(409, f"file {file_id} is not flagged as a near-duplicate")
    return row, row.near_duplicate_of


def keep(ctx: Context, file_id: int) -> File:
    """Keep both images: clear the flag and never raise it again for this pair."""

    def write() -> File:
        row, base = _flagged(file_id)
        low, high = sorted((row.id, base))
        con = database_proxy.connection()
        con.execute(
            "INSERT OR IGNORE INTO near_keeps (low, high, at) VALUES (?, ?, ?)",
            (low, high, sql_time(utcnow())),
        )
        con.execute(
            "UPDATE files SET near_duplicate_of = NULL, updated_at = ? WHERE id = ?",
            (sql_time(utcnow()), row.id),
        )
        return row

    row = ctx.writer.call(write)
    # Now an image in its own right: later arrivals may resemble it.
    if (
        ctx.near_index is not None
        and row.phash is not None
        and row.status in FileStatus.ACCEPTED
        and informative(row.phash)
    ):
        ctx.near_index.add(row.id, row.phash)
    logger.bind(event="review", file_id=row.id, status="kept").info(
        "kept file {} beside file {}", row.id, row.near_duplicate_of
    )
    return File.get_by_id(file_id)


def _inside(path: str, roots: tuple[Path, ...]) -> bool:
    real = os.path.realpath(os.path.dirname(path))
    return any(
        real == str(r) or real.startswith(str(r) + os.sep)
        for r in (Path(os.path.realpath(root)) for root in roots)
    )


def _stage_locks(ctx: Context, status: str) -> list[threading.Lock]:
    """The locks of the stages that may move a file in `status` (claim, then move).

    Held while the file is set aside, so the batch, hand-over or sort cannot take
    the same file at the same time: two moves of one file would leave its row
    pointing at the loser's destination, or a batch listing a file it lost.
    """
    if status == FileStatus.UNIQUE:
        return [ctx.shared.batch_lock]
    if status in (FileStatus.BATCHED, FileStatus.SYNCED):
        return [ctx.shared.sync_lock, ctx.shared.sort_lock]
    return []  # SORTED: nothing else moves a library file


def mark_duplicate(ctx: Context, file_id: int) -> File:
    """Move a flagged file to duplicates_dir (journaled); it becomes DUPLICATE of its group's file."""
    row, base = _flagged(file_id)
    if row.status not in MOVABLE:
        raise ReviewError(
            409, f"file {file_id} is {row.status}; only a kept file can be set aside"
        )
    with ExitStack() as held:
        for lock in _stage_locks(ctx, row.status):
            if not lock.acquire(timeout=LOCK_WAIT_SECONDS):
                raise ReviewError(
                    409, f"file {file_id} is being batched, synced or sorted; retry"
                )
            held.callback(lock.release)
        return _set_aside(ctx, row, base)


def _set_aside(ctx: Context, row: File, base: int) -> File:
    file_id = row.id
    roots = ctx.roots
    if not _inside(
        row.current_path,
        (roots.inbox, roots.batch_dir, roots.sync_dir, roots.sorted_dir),
    ):
        raise ReviewError(409, f"file {file_id} is not inside a configured folder")

    def claim() -> None:
        # duplicate_of first: the status becomes DUPLICATE with the move itself.
        current = File.get_by_id(file_id)
        if current.status != row.status or current.current_path != row.current_path:
            raise ReviewError(409, f"file {file_id} moved meanwhile; reload")
        if current.status == FileStatus.UNIQUE and current.batch is not None:
            # Claimed by a batch a crash left building: it moves in at the next batch.
            raise ReviewError(409, f"file {file_id} is joining a batch; retry")
        File.update(duplicate_of=base).where(File.id == file_id).execute()

    ctx.writer.call(claim)
    try:
        dst = ctx.mover.move(
            MoveRequest(
                src=row.current_path,
                dst=roots.duplicates_dir / row.rel_path,
                file_id=file_id,
                new_status=FileStatus.DUPLICATE,
                sha256=row.sha256,
            )
        )
    except MoveError as exc:
        ctx.writer.call(
            lambda: File.update(duplicate_of=None)
            .where(File.id == file_id, File.status != FileStatus.DUPLICATE)
            .execute()
        )
        raise ReviewError(409, f"file {file_id} could not be moved: {exc}") from None
    ctx.writer.call(
        lambda: File.update(near_duplicate_of=None).where(File.id == file_id).execute()
    )
    if ctx.near_index is not None:
        ctx.near_index.remove(file_id)
    logger.bind(event="review", file_id=file_id, status=FileStatus.DUPLICATE).info(
        "set aside as a duplicate of file {}: moved to {}", base, dst
    )
    return File.get_by_id(file_id)
