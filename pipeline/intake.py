"""Intake: turn a settled inbox path into a `files` row, and walk the inbox for scans."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from loguru import logger

from pipeline.context import Context
from pipeline.media import is_media_or_sidecar
from pipeline.models import (
    File,
    FileStatus,
    database_proxy,
    sql_list,
    sql_time,
    utcnow,
)
from pipeline.states import check_file_transition
from pipeline.store import db_conn, set_file_status


@dataclass
class Item:
    """A file moving through the intake stages."""

    file_id: int
    path: Path
    sha256: str | None = None
    phash: int | None = None


@functools.lru_cache(maxsize=32)
def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    # Case-insensitive so that FOO.PART or X.TMP from Windows clients are held back too.
    return re.compile("|".join(fnmatch.translate(p) for p in patterns), re.IGNORECASE)


def is_ignored(rel: PurePath, patterns: Sequence[str]) -> bool:
    """True if any component of `rel` (relative to the inbox) matches a glob pattern.

    Matching each component means `.*` also hides every file inside a dot-folder.
    """
    return ignored_parts(rel.parts, tuple(patterns))


def ignored_parts(parts: Iterable[str], patterns: tuple[str, ...]) -> bool:
    """`is_ignored` for path components, without building a path (a walk's names)."""
    rx = _compile(patterns)
    return rx is not None and any(rx.match(part) for part in parts)


def regular_file_stat(path: Path) -> os.stat_result | None:
    """lstat of `path`; None unless it is a regular file (never follows a symlink)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _real_under(real_root: str, folder: Path) -> bool:
    """True when `folder`'s real path lies under `real_root` (a symlink escapes)."""
    real = os.path.realpath(folder)
    return real == real_root or real.startswith(real_root + os.sep)


def walk_inbox(root: Path, patterns: Sequence[str]) -> Iterator[Path]:
    """Every regular, non-ignored file under `root`; symlinks are never followed."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            logger.bind(event="scan").warning(
                "cannot list {}: {}", folder, exc.strerror
            )
            continue
        for entry in entries:
            path = Path(entry.path)
            if is_ignored(path.relative_to(root), patterns):
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append(path)
            elif entry.is_file(follow_symlinks=False):
                yield path


EMPTY = "empty file (0 bytes): an aborted copy, not a photo"
NOT_MEDIA = "not a photo, video or sidecar (intake.media_only)"


def skip_reason(
    path: str | os.PathLike[str], size: int, media_only: bool
) -> str | None:
    """Why a settled inbox file stays where it is as SKIPPED, or None to take it."""
    if size == 0:
        return EMPTY
    if media_only and not is_media_or_sidecar(path):
        return NOT_MEDIA
    return None


def register(ctx: Context, path: Path) -> Item | None:
    """Stage 1: find or create the row for an inbox file; None when nothing is to do.

    A path already known with the same size and mtime continues where it stopped
    (NEW → hash, HASHED → dedup) or is skipped (UNIQUE, ERROR); a changed file is
    reset to NEW and hashed again. An empty file, and with `intake.media_only` a
    file that is no photo, video or sidecar, becomes SKIPPED and stays put; a
    SKIPPED row is looked at again each time (the file grew, or the setting changed).
    """
    return register_many(ctx, [path])[0]


def register_many(ctx: Context, paths: list[Path]) -> list[Item | None]:
    """`register` for a group of paths, in one writer round trip (one transaction).

    Raises if the database write fails; nothing of the group is written then.
    """
    real_inbox = os.path.realpath(ctx.roots.inbox)
    # A folder's files arrive together: resolve each folder once per group, not
    # once per file (realpath is an lstat per path component).
    inside = functools.cache(functools.partial(_real_under, real_inbox))
    # A path announced twice in one group is taken once.
    unique = {str(p): Path(p) for p in paths}
    seen = [
        _seen(ctx, inside, unique.pop(str(p))) if str(p) in unique else None
        for p in paths
    ]
    todo = [s for s in seen if s is not None]
    upserts = ctx.writer.call(lambda: [_upsert(ctx, *s) for s in todo]) if todo else []
    results = iter(upserts)
    items: list[Item | None] = []
    for found in seen:
        item, change = next(results) if found is not None else (None, None)
        if change is not None and found is not None:
            _log_change(change, found[1], found[3])
        items.append(item)
    return items


_Seen = tuple[Path, str, os.stat_result, str | None]


def _seen(ctx: Context, inside: Callable[[Path], bool], path: Path) -> _Seen | None:
    """(path, path in the inbox, lstat, why it is skipped) of a regular inbox file.

    `inside(folder)` says whether a folder really lies in the inbox.
    """
    st = regular_file_stat(path)
    if st is None or not inside(path.parent):
        logger.bind(event="intake", status="skipped").info(
            "not a regular inbox file: {}", path
        )
        return None
    rel = path.relative_to(ctx.roots.inbox).as_posix()
    return path, rel, st, skip_reason(path, st.st_size, ctx.settings.intake.media_only)


def _log_change(change: tuple[str, int, str], rel: str, reason: str | None) -> None:
    status, file_id, what = change
    # A new file is routine (the watcher logs one line per group of them); a
    # skip or a change is worth a line of its own.
    level = "DEBUG" if status == FileStatus.NEW and what == NEW_FILE else "INFO"
    logger.bind(event="intake", file_id=file_id, status=status).log(
        level, "{} {}{}", what, rel, f" skipped: {reason}" if reason else ""
    )


# Raw SQL on the per-file path: peewee's query building cost far more than SQLite.
_FIND_IN_INBOX = (
    "SELECT id, size, mtime_ns, status, sha256, phash FROM files"
    f" WHERE current_path = ? AND status IN {sql_list(FileStatus.IN_INBOX)}"
    " ORDER BY id DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO files (original_path, rel_path, current_path, size, mtime_ns, status,"
    " error, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
)
NEW_FILE = "new file"
# (new status, file id, what happened) when the row was made or its status set.
_Change = tuple[str, int, str] | None


def _upsert(
    ctx: Context, path: Path, rel: str, st: os.stat_result, reason: str | None
) -> tuple[Item | None, _Change]:
    """On the writer thread: (item to process or None, the status change if any)."""
    con = database_proxy.connection()
    found = con.execute(_FIND_IN_INBOX, (str(path),)).fetchone()
    status = FileStatus.SKIPPED if reason else FileStatus.NEW
    if found is None:
        now = sql_time(utcnow())
        values = (str(path), rel, str(path), st.st_size, st.st_mtime_ns, status)
        file_id = con.execute(_INSERT, (*values, reason, now, now)).lastrowid
        return (None if reason else Item(file_id, path)), (status, file_id, NEW_FILE)
    file_id, size, mtime_ns, old, sha256, phash = found
    unchanged = (size, mtime_ns) == (st.st_size, st.st_mtime_ns)
    if unchanged and old != FileStatus.SKIPPED:
        return _resume(file_id, old, sha256, phash, path), None
    if unchanged and reason:
        return None, None  # still nothing to take
    # A changed file starts over as NEW; register then decides again (NEW → SKIPPED).
    _reset(ctx, File.get_by_id(file_id), st, FileStatus.NEW, None)
    if reason:
        _reset(ctx, File.get_by_id(file_id), st, status, reason)
    what = "changed file" if not unchanged else "file no longer skipped"
    return (None if reason else Item(file_id, path)), (status, file_id, what)


def _resume(
    file_id: int, status: str, sha256: str | None, phash: int | None, path: Path
) -> Item | None:
    if status == FileStatus.NEW:
        return Item(file_id, path)
    if status == FileStatus.HASHED:
        return Item(file_id, path, sha256, phash)
    return None


def _reset(
    ctx: Context, row: File, st: os.stat_result, status: str, reason: str | None
) -> None:
    """The file at a known path changed (or is now wanted) before it was batched."""
    check_file_transition(row.status, status)
    if ctx.near_index is not None:
        ctx.near_index.remove(row.id)
    set_file_status(
        db_conn(),
        row.id,
        FileStatus(status),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=None,
        phash=None,
        error=reason,
        near_duplicate_of=None,
        near_distance=None,
        duplicate_of=None,
    )
