"""Settling the journal entries a crash left PENDING, so the database and the disk agree."""

from __future__ import annotations

import os
from functools import partial

from loguru import logger

from pipeline.db import Writer
from pipeline.fsops.journal import Entry, close_entry, finish_rows, pending_entries
from pipeline.fsops.paths import (
    SwappedPath,
    exists,
    os_reason,
    same_file,
    sha256_of,
    unlink_inside,
)
from pipeline.models import MoveState


def recover(writer: Writer) -> dict[str, int]:
    """Settle every PENDING journal entry; returns counts by outcome state."""
    counts = {MoveState.DONE: 0, MoveState.ABANDONED: 0, MoveState.FAILED: 0}
    for entry in pending_entries():
        try:
            state, dst, error = settle(entry)
        except OSError as exc:  # e.g. a source folder swapped for a symlink
            state, dst, error = MoveState.FAILED, entry.dst, os_reason(exc)
        if state == MoveState.DONE:
            writer.call(partial(finish_rows, [(entry, dst)]))
        else:
            writer.call(partial(close_entry, entry, state, error))
        counts[state] += 1
        logger.bind(event="recover", file_id=entry.file_id, status=state).info(
            "journal entry {} settled as {}: {} -> {}",
            entry.id,
            state,
            entry.src,
            entry.dst,
        )
    return counts


def settle(entry: Entry) -> tuple[str, str, str | None]:
    """Decide, from what is on disk, how an interrupted move ended; fixes the disk up."""
    if entry.method == "link":
        return _settle_link(entry.src, entry.dst)
    return _settle_copy(entry.src, entry.dst, str(entry.tmp), entry.sha256)


def _settle_link(src: str, dst: str) -> tuple[str, str, str | None]:
    if exists(dst) and exists(src):
        if same_file(src, dst):
            kept = _drop_source(src, dst)
            if kept:
                return MoveState.ABANDONED, dst, kept
            return MoveState.DONE, dst, None
        return MoveState.ABANDONED, dst, "destination taken by another file; not moved"
    if exists(dst):
        return MoveState.DONE, dst, None
    if exists(src):
        return MoveState.ABANDONED, dst, "interrupted before the move"
    return MoveState.FAILED, dst, "file missing from both source and destination"


def _settle_copy(
    src: str, dst: str, tmp: str, expected: str | None
) -> tuple[str, str, str | None]:
    if exists(tmp) and exists(dst) and same_file(tmp, dst):
        os.unlink(tmp)
    if exists(dst):
        if not exists(src):
            return MoveState.DONE, dst, None
        if sha256_of(dst) == sha256_of(src):
            kept = _drop_source(src, dst)
            if kept:
                return MoveState.ABANDONED, dst, kept
            return MoveState.DONE, dst, None
        _drop_partial(tmp, src)
        return MoveState.ABANDONED, dst, "destination taken by another file; not moved"
    if exists(src):
        _drop_partial(tmp, src)
        return MoveState.ABANDONED, dst, "interrupted before the copy was placed"
    if exists(tmp) and expected and sha256_of(tmp) == expected:
        os.link(tmp, dst)
        os.unlink(tmp)
        return MoveState.DONE, dst, None
    return MoveState.FAILED, dst, f"source missing; partial copy kept at {tmp}"


def _drop_source(src: str, dst: str) -> str | None:
    """Finish a move whose destination holds the source's content: unlink the source.

    When the source cannot be removed (a folder the daemon may read but not write),
    the new name is taken back instead, so the file stays where it was, once: the
    move is abandoned (why is returned) and can be tried again. None: done.
    """
    try:
        unlink_inside(src)
    except SwappedPath:
        raise  # the source is no longer where it was: keep what we hold
    except OSError as exc:
        os.unlink(dst)  # the same content as the source, which stays
        return f"source cannot be removed ({os_reason(exc)}); not moved"
    return None


def _drop_partial(tmp: str, src: str) -> None:
    """Remove our partial copy; only called while the source is still in place."""
    if exists(tmp) and exists(src):
        os.unlink(tmp)
