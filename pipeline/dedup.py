"""Stage 3: exact duplicates to duplicates_dir, near-duplicate images flagged for review.

The decision runs on the database writer thread, so two identical files arriving
together are decided one after the other: exactly one becomes UNIQUE.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from loguru import logger

from pipeline.context import Context
from pipeline.fsops import MoveError, MoveRequest, MoveResult
from pipeline.intake import Item
from pipeline.media import is_sidecar
from pipeline.models import (
    FileStatus,
    database_proxy,
    sql_list,
    sql_time,
    utcnow,
)
from pipeline.nearindex import NearIndex, informative
from pipeline.runner import heartbeat
from pipeline.store import move_files


@dataclass(frozen=True)
class Decision:
    status: str
    duplicate_of: int | None = None
    near_duplicate_of: int | None = None
    distance: int | None = None
    # Where a duplicate goes under duplicates_dir: how it is carried out, not what.
    rel_path: str = field(default="", compare=False)


def dedup_item(ctx: Context, item: Item) -> Item | None:
    """Decide UNIQUE or DUPLICATE; a duplicate is moved out of the inbox through fsops."""
    outcome = dedup_many(ctx, [item])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def dedup_many(ctx: Context, items: list[Item]) -> list[Item | None | Exception]:
    """`dedup_item` for a group: one writer round trip decides them all, in order.

    Identical files in one group are decided one after the other like any others
    (the first is UNIQUE). The group's duplicates are set aside in one journaled
    move; one that could not be set aside has its error as its outcome.
    """
    if ctx.near_index is not None:
        # Loading at start: wait here, not on the writer thread inside `decide`.
        ctx.near_index.wait_ready()
    decisions = ctx.writer.call(lambda: _decide_each(ctx, items))
    moved = _set_aside(ctx, items, decisions)
    return [
        _outcome(item, decision, moved.get(n))
        for n, (item, decision) in enumerate(zip(items, decisions, strict=True))
    ]


def _decide_each(ctx: Context, items: list[Item]) -> list[Decision | None]:
    taken: set[int] = set()  # the same file twice in a group is decided once
    decisions = []
    for item in items:
        fresh = item.file_id not in taken
        taken.add(item.file_id)
        decisions.append(decide(ctx, item) if fresh else None)
    return decisions


_Moved = MoveResult | Exception


def _set_aside(
    ctx: Context, items: list[Item], decisions: list[Decision | None]
) -> dict[int, _Moved]:
    """Move the group's duplicates to duplicates_dir; by place in the group.

    One journal commit before and one after for all of them; the stall clock
    (`heartbeat`) still restarts for each file, as a duplicate may be a large video
    copied to another disk.
    """
    places = [
        n
        for n, d in enumerate(decisions)
        if d is not None and d.status == FileStatus.DUPLICATE
    ]
    if not places:
        return {}
    requests = [_request(ctx, items[n], decisions[n]) for n in places]
    try:
        results: list[_Moved] = list(ctx.mover.move_many(requests, on_each=heartbeat))
    except Exception as exc:  # noqa: BLE001 - the journal write failed: none moved
        results = [exc] * len(places)
    return dict(zip(places, results, strict=True))


def _request(ctx: Context, item: Item, decision: Decision | None) -> MoveRequest:
    assert decision is not None
    return MoveRequest(
        src=item.path,
        dst=ctx.roots.duplicates_dir / decision.rel_path,
        file_id=item.file_id,
        new_status=FileStatus.DUPLICATE,
        sha256=item.sha256,
    )


def _outcome(
    item: Item, decision: Decision | None, moved: _Moved | None
) -> Item | None | Exception:
    """What became of one item of the group, logged."""
    if decision is None:
        return None
    log = logger.bind(event="dedup", file_id=item.file_id, status=decision.status)
    if isinstance(moved, Exception):
        return moved
    if moved is not None and not moved.ok:
        return MoveError(moved.error or "move failed", moved.errno)
    if moved is not None:
        log.info("duplicate of file {}: moved to {}", decision.duplicate_of, moved.dst)
    elif decision.near_duplicate_of is not None:
        log.info(
            "near-duplicate of file {} (distance {})",
            decision.near_duplicate_of,
            decision.distance,
        )
    return item


def decide(ctx: Context, item: Item) -> Decision | None:
    """On the writer thread: compare with every accepted file; None if already decided.

    Raw SQL: this runs once per file on the writer thread, where peewee's query
    building cost far more than SQLite.
    """
    con = database_proxy.connection()
    row = con.execute(
        "SELECT status, rel_path FROM files WHERE id = ?", (item.file_id,)
    ).fetchone()
    if row is None or row[0] != FileStatus.HASHED:
        return None
    now = sql_time(utcnow())
    match = _exact_match(con, item)
    if match is not None:
        # Status flips to DUPLICATE with the move, so a crash before it re-decides.
        con.execute(
            "UPDATE files SET duplicate_of = ?, updated_at = ? WHERE id = ?",
            (match, now, item.file_id),
        )
        return Decision(FileStatus.DUPLICATE, duplicate_of=match, rel_path=row[1])
    near, distance = _nearest(ctx, item)
    move_files(
        con,
        FileStatus.HASHED,
        FileStatus.UNIQUE,
        "id = ?",
        (item.file_id,),
        near_duplicate_of=near,
        near_distance=distance,
    )
    # A flagged image stays out of the index: images like it match the one it
    # resembles, so each image is in one review group.
    matchable = _matchable(ctx, item)
    if near is None and matchable is not None:
        index, phash = matchable
        index.add(item.file_id, phash)
    return Decision(FileStatus.UNIQUE, near_duplicate_of=near, distance=distance)


_ACCEPTED_MATCH = (
    "SELECT id FROM files WHERE sha256 = ? AND id != ?"
    f" AND status IN {sql_list(FileStatus.ACCEPTED)} LIMIT 1"
)


def _exact_match(con: sqlite3.Connection, item: Item) -> int | None:
    """The id of an accepted file with the same content; sidecars never match."""
    if is_sidecar(item.path):
        return None
    found = con.execute(_ACCEPTED_MATCH, (item.sha256, item.file_id)).fetchone()
    return found[0] if found else None


def _matchable(ctx: Context, item: Item) -> tuple[NearIndex, int] | None:
    """The near index and the item's pHash, when that pHash says enough to compare.

    None for a file without a pHash, a flat image (its pHash says nothing) or a
    context without a near index.
    """
    if item.phash is None or ctx.near_index is None or not informative(item.phash):
        return None
    return ctx.near_index, item.phash


def _nearest(ctx: Context, item: Item) -> tuple[int | None, int | None]:
    """The closest accepted image within the limit, skipping pairs the owner kept."""
    limit = ctx.settings.dedup.near_duplicate_distance
    matchable = _matchable(ctx, item)
    if limit <= 0 or matchable is None:
        return None, None
    index, phash = matchable
    candidates = index.within(phash, limit, 2)
    if all(other == item.file_id for other, _ in candidates):
        return None, None  # the common case: no query for pairs the owner kept
    kept = kept_partners(database_proxy.connection(), item.file_id)
    if kept:
        candidates = index.within(phash, limit, len(kept) + 2)
    for other, distance in candidates:
        if other != item.file_id and other not in kept:
            return other, distance
    return None, None


def kept_partners(con: sqlite3.Connection, file_id: int) -> set[int]:
    """Files the owner kept alongside `file_id` (never near-duplicates of it again)."""
    rows = con.execute(
        "SELECT high FROM near_keeps WHERE low = ? UNION "
        "SELECT low FROM near_keeps WHERE high = ?",
        (file_id, file_id),
    )
    return {r[0] for r in rows}
