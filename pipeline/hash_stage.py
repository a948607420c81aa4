"""Stage 2: SHA-256 and pHash of a file, in threads bounded by max_parallel_fs_ops."""

from __future__ import annotations

import os

from loguru import logger

from pipeline.context import Context
from pipeline.hashing import FileChanged, is_image, phash, sha256_file
from pipeline.intake import Item
from pipeline.models import File, FileStatus, database_proxy, sql_time, utcnow


class NotAcceptable(Exception):
    """A file the pipeline will not take (empty, undecodable image); it becomes ERROR."""


def hash_item(ctx: Context, item: Item) -> Item | None:
    """Hash `item`; a file that changes while read is left NEW for the watcher to retry."""
    if item.sha256:
        return item
    log = logger.bind(event="hash", file_id=item.file_id)
    try:
        with ctx.fs_slots:
            digest = sha256_file(item.path)
            image_hash = (
                phash(item.path) if is_image(item.path) and digest.size else None
            )
    except (FileChanged, FileNotFoundError) as exc:
        log.info("{} changed or vanished while hashed; will retry: {}", item.path, exc)
        ctx.writer.call(lambda: _forget_if_gone(item))
        return None
    if digest.size == 0:
        raise NotAcceptable("empty file (0 bytes)")
    if is_image(item.path) and image_hash is None:
        raise NotAcceptable(
            "not a decodable image (corrupt, truncated or not an image)"
        )
    item.sha256, item.phash = digest.sha256, image_hash
    updated = ctx.writer.call(lambda: _record(item, digest.size, digest.mtime_ns))
    log.bind(status="HASHED").debug("hashed {}", item.path)
    return item if updated else None


def _record(item: Item, size: int, mtime_ns: int) -> int:
    # Only a NEW row moves on: a second announcement of the same file changes nothing.
    # Raw SQL: this runs once per file on the writer thread.
    cursor = database_proxy.connection().execute(
        "UPDATE files SET sha256 = ?, phash = ?, size = ?, mtime_ns = ?,"
        " status = 'HASHED', updated_at = ? WHERE id = ? AND status = 'NEW'",
        (item.sha256, item.phash, size, mtime_ns, sql_time(utcnow()), item.file_id),
    )
    return cursor.rowcount


def _forget_if_gone(item: Item) -> None:
    """A NEW row whose file left the inbox never held anything: drop it."""
    if not os.path.lexists(item.path):
        File.delete().where(
            File.id == item.file_id, File.status == FileStatus.NEW
        ).execute()
