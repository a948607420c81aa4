"""Stage 3: exact duplicates to duplicates_dir, near-duplicate images flagged for review.

The decision runs on the database writer thread, so two identical files arriving
together are decided one after the other: exactly one becomes UNIQUE.
"""

from __future__ import annotations

from dataclasses import dataclass

from loguru import logger

from pipeline.context import Context
from pipeline.fsops import MoveRequest
from pipeline.intake import Item
from pipeline.media import is_sidecar
from pipeline.models import File, FileStatus, utcnow


@dataclass(frozen=True)
class Decision:
    status: str
    duplicate_of: int | None = None
    near_duplicate_of: int | None = None
    distance: int | None = None


def dedup_item(ctx: Context, item: Item) -> Item | None:
    """Decide UNIQUE or DUPLICATE; a duplicate is moved out of the inbox through fsops."""
    decision = ctx.writer.call(lambda: decide(ctx, item))
    if decision is None:
        return None
    log = logger.bind(event="dedup", file_id=item.file_id, status=decision.status)
    if decision.status == FileStatus.DUPLICATE:
        rel = File.get_by_id(item.file_id).rel_path
        dst = ctx.mover.move(
            MoveRequest(
                src=item.path,
                dst=ctx.roots.duplicates_dir / rel,
                file_id=item.file_id,
                new_status=FileStatus.DUPLICATE,
                sha256=item.sha256,
            )
        )
        log.info("duplicate of file {}: moved to {}", decision.duplicate_of, dst)
    elif decision.near_duplicate_of is not None:
        log.info(
            "near-duplicate of file {} (distance {})",
            decision.near_duplicate_of,
            decision.distance,
        )
    return item


def decide(ctx: Context, item: Item) -> Decision | None:
    """On the writer thread: compare with every accepted file; None if already decided."""
    row = File.get_or_none(File.id == item.file_id)
    if row is None or row.status != FileStatus.HASHED:
        return None
    match = _exact_match(item)
    if match is not None:
        # Status flips to DUPLICATE with the move, so a crash before it re-decides.
        File.update(duplicate_of=match.id, updated_at=utcnow()).where(
            File.id == row.id
        ).execute()
        return Decision(FileStatus.DUPLICATE, duplicate_of=match.id)
    near, distance = _nearest(ctx, item)
    File.update(
        status=FileStatus.UNIQUE,
        near_duplicate_of=near,
        near_distance=distance,
        updated_at=utcnow(),
    ).where(File.id == row.id).execute()
    if item.phash is not None and ctx.near_index is not None:
        ctx.near_index.add(item.file_id, item.phash)
    return Decision(FileStatus.UNIQUE, near_duplicate_of=near, distance=distance)


def _exact_match(item: Item) -> File | None:
    """An accepted file with the same content; sidecars are never matched."""
    if is_sidecar(item.path):
        return None
    return (
        File.select(File.id)
        .where(
            File.sha256 == item.sha256,
            File.status.in_(FileStatus.ACCEPTED),
            File.id != item.file_id,
        )
        .first()
    )


def _nearest(ctx: Context, item: Item) -> tuple[int | None, int | None]:
    limit = ctx.settings.dedup.near_duplicate_distance
    if item.phash is None or ctx.near_index is None or limit <= 0:
        return None, None
    found = ctx.near_index.nearest(item.phash, limit, exclude=item.file_id)
    return (found[0], found[1]) if found else (None, None)
