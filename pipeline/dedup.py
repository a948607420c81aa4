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
    decisions = ctx.writer.call(lambda: decide_many(ctx, items))
    moved = _set_aside(ctx, items, decisions)
    return [
        _outcome(item, decision, moved.get(n))
        for n, (item, decision) in enumerate(zip(items, decisions, strict=True))
    ]


_Moved = MoveResult | Exception


def _set_aside(
    ctx: Context, items: list[Item], decisions: list[Decision | None]
) -> dict[int, _Moved]:
    """Move the group's duplicates to duplicates_dir; by place in the group.

    One journal commit before and one after for all of them; the stall clock
    (`heartbeat`) still restarts for each file, as a duplicate may be a large video
    copied to another disk.
    """
    duplicates = [
        (n, _request(ctx, item, d))
        for n, (item, d) in enumerate(zip(items, decisions, strict=True))
        if d is not None and d.status == FileStatus.DUPLICATE
    ]
    if not duplicates:
        return {}
    places, requests = zip(*duplicates, strict=True)
    try:
        results: list[_Moved] = list(
            ctx.mover.move_many(list(requests), on_each=heartbeat)
        )
    except Exception as exc:  # noqa: BLE001 - the journal write failed: none moved
        results = [exc] * len(places)
    return dict(zip(places, results, strict=True))


def _request(ctx: Context, item: Item, decision: Decision) -> MoveRequest:
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
    """On the writer thread: compare with every accepted file; None if already decided."""
    return decide_many(ctx, [item])[0]


def decide_many(ctx: Context, items: list[Item]) -> list[Decision | None]:
    """`decide` for a group, in order, as if one after the other.

    The rows and the accepted files with the same content are read for the whole
    group at once: per file that leaves one write. A file twice in the group is
    decided once; a file decided UNIQUE here is a match for the ones after it.
    """
    con = database_proxy.connection()
    hashed = _hashed_rows(con, [item.file_id for item in items])
    accepted = _accepted_by_content(con, items)
    now = sql_time(utcnow())
    decisions: list[Decision | None] = []
    for item in items:
        rel_path = hashed.pop(item.file_id, None)  # popped: decided once
        decided = None
        if rel_path is not None:
            decided = _decide_one(ctx, con, item, rel_path, accepted, now)
        decisions.append(decided)
    return decisions


def _decide_one(
    ctx: Context,
    con: sqlite3.Connection,
    item: Item,
    rel_path: str,
    accepted: dict[str, list[int]],
    now: str,
) -> Decision:
    match = _exact_match(item, accepted)
    if match is not None:
        # Status flips to DUPLICATE with the move, so a crash before it re-decides.
        con.execute(
            "UPDATE files SET duplicate_of = ?, updated_at = ? WHERE id = ?",
            (match, now, item.file_id),
        )
        return Decision(FileStatus.DUPLICATE, duplicate_of=match, rel_path=rel_path)
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
    if item.sha256:
        accepted.setdefault(item.sha256, []).append(item.file_id)
    # A flagged image stays out of the index: images like it match the one it
    # resembles, so each image is in one review group.
    matchable = _matchable(ctx, item)
    if near is None and matchable is not None:
        index, phash = matchable
        index.add(item.file_id, phash)
    return Decision(FileStatus.UNIQUE, near_duplicate_of=near, distance=distance)


# Raw SQL: these run for every group on the writer thread, where peewee's query
# building cost far more than SQLite.
def _hashed_rows(con: sqlite3.Connection, ids: list[int]) -> dict[int, str]:
    """id -> rel_path of the files among `ids` still HASHED (not yet decided)."""
    rows = con.execute(
        f"SELECT id, rel_path FROM files WHERE id IN ({', '.join('?' * len(ids))})"
        " AND status = ?",
        (*ids, FileStatus.HASHED),
    )
    return dict(rows.fetchall())


def _accepted_by_content(
    con: sqlite3.Connection, items: list[Item]
) -> dict[str, list[int]]:
    """SHA-256 -> ids of accepted files, for the contents a non-sidecar here has."""
    wanted = sorted({i.sha256 for i in items if i.sha256 and not is_sidecar(i.path)})
    if not wanted:
        return {}
    rows = con.execute(
        f"SELECT sha256, id FROM files WHERE sha256 IN ({', '.join('?' * len(wanted))})"
        f" AND status IN {sql_list(FileStatus.ACCEPTED)} ORDER BY id",
        wanted,
    )
    accepted: dict[str, list[int]] = {}
    for sha256, file_id in rows:
        accepted.setdefault(sha256, []).append(file_id)
    return accepted


def _exact_match(item: Item, accepted: dict[str, list[int]]) -> int | None:
    """The id of an accepted file with the same content; sidecars never match."""
    if is_sidecar(item.path) or not item.sha256:
        return None
    return next((i for i in accepted.get(item.sha256, ()) if i != item.file_id), None)


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
