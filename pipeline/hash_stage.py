"""Stage 2: SHA-256 and pHash of a file, in threads bounded by max_parallel_fs_ops."""

from __future__ import annotations

import os
import time
from pathlib import Path

from loguru import logger

from pipeline.context import Context
from pipeline.hashing import Digest, FileChanged, is_image, phash, sha256_file
from pipeline.intake import EMPTY, Item
from pipeline.models import File, FileStatus
from pipeline.runner import heartbeat
from pipeline.store import db_conn, move_files

# Hashing this long without a write records what is done so far (see `hash_many`).
RECORD_EVERY_SECONDS = 0.5


def hash_file(ctx: Context, path: Path) -> tuple[Digest, int | None]:
    """SHA-256 and (for an image) pHash of `path`, holding one of ctx.fs_slots.

    Raises like `sha256_file`; the pHash is None for a non-image, an empty file or an
    image that cannot be decoded. Adoption hashes through here too.
    """
    with ctx.fs_slots:
        digest = sha256_file(path)
        image_hash = phash(path) if is_image(path) and digest.size else None
    return digest, image_hash


def hash_item(ctx: Context, item: Item) -> Item | None:
    """Hash `item`; a file that changes while read is left NEW for the watcher to retry.

    An image that cannot be decoded is still the owner's file: it goes on without a
    pHash (de-duplicated by SHA-256, sorted by date). Only a file that cannot be
    read raises (the caller records ERROR). A file found empty now becomes SKIPPED.
    """
    outcome = hash_many(ctx, [item])[0]
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def hash_many(ctx: Context, items: list[Item]) -> list[Item | None | Exception]:
    """`hash_item` for a group: each file hashed in turn, recorded in few writes.

    What is hashed is recorded at the end of the group, or sooner once hashing has
    gone on for RECORD_EVERY_SECONDS: large files are recorded one by one, and a
    kill -9 costs at most that much hashing per thread, whatever the group's size.
    A file that cannot be read is that item's outcome (its exception).
    """
    outcomes: list[Item | None | Exception] = []
    hashed: list[tuple[int, Item, Digest]] = []  # (place in outcomes, item, digest)
    since = time.monotonic()
    for item in items:
        heartbeat()  # a stage is hung when one file takes too long, not a group
        try:
            digest = _hash(ctx, item)
        except Exception as exc:  # noqa: BLE001 - this item's outcome
            outcomes.append(exc)
            continue
        if digest is not None:
            hashed.append((len(outcomes), item, digest))
        # Resumed with its hash known: straight on to dedup.
        outcomes.append(item if digest is None and item.sha256 else None)
        if hashed and time.monotonic() - since >= RECORD_EVERY_SECONDS:
            _record_all(ctx, hashed, outcomes)
            hashed, since = [], time.monotonic()
    if hashed:
        _record_all(ctx, hashed, outcomes)
    return outcomes


def _record_all(
    ctx: Context,
    hashed: list[tuple[int, Item, Digest]],
    outcomes: list[Item | None | Exception],
) -> None:
    """Record the digests in one write; an item goes on only if its row moved."""
    updated = ctx.writer.call(lambda: [_record(i, d) for _, i, d in hashed])
    for (at, item, _), moved in zip(hashed, updated, strict=True):
        outcomes[at] = item if moved else None


def _hash(ctx: Context, item: Item) -> Digest | None:
    """The digest to record, or None: already hashed, changed, vanished or empty."""
    if item.sha256:
        return None
    log = logger.bind(event="hash", file_id=item.file_id)
    try:
        digest, image_hash = hash_file(ctx, item.path)
    except (FileChanged, FileNotFoundError) as exc:
        log.info("{} changed or vanished while hashed; will retry: {}", item.path, exc)
        ctx.writer.call(lambda: _forget_if_gone(item))
        return None
    if digest.size == 0:
        ctx.writer.call(lambda: _skip_empty(item, digest.mtime_ns))
        log.bind(status=FileStatus.SKIPPED).info("{} skipped: {}", item.path, EMPTY)
        return None
    if is_image(item.path) and image_hash is None:
        log.info("{} is not a decodable image: kept, without a pHash", item.path)
    item.sha256, item.phash = digest.sha256, image_hash
    log.bind(status=FileStatus.HASHED).debug("hashed {}", item.path)
    return digest


def _record(item: Item, digest: Digest) -> int:
    # Only a NEW row moves on: a second announcement of the same file changes nothing.
    return move_files(
        db_conn(),
        FileStatus.NEW,
        FileStatus.HASHED,
        "id = ?",
        (item.file_id,),
        sha256=item.sha256,
        phash=item.phash,
        size=digest.size,
        mtime_ns=digest.mtime_ns,
    )


def _skip_empty(item: Item, mtime_ns: int) -> None:
    """The file was emptied after it was registered: nothing to take, leave it be."""
    move_files(
        db_conn(),
        FileStatus.NEW,
        FileStatus.SKIPPED,
        "id = ?",
        (item.file_id,),
        size=0,
        mtime_ns=mtime_ns,
        error=EMPTY,
    )


def _forget_if_gone(item: Item) -> None:
    """A NEW row whose file left the inbox never held anything: drop it."""
    if not os.path.lexists(item.path):
        File.delete().where(
            File.id == item.file_id, File.status == FileStatus.NEW
        ).execute()
