"""Intake: turn a settled inbox path into a `files` row, and walk the inbox for scans."""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from loguru import logger

from pipeline.context import Context
from pipeline.models import (
    File,
    FileStatus,
    database_proxy,
    sql_list,
    sql_time,
    utcnow,
)


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
    rx = _compile(tuple(patterns))
    return rx is not None and any(rx.match(part) for part in rel.parts)


def regular_file_stat(path: Path) -> os.stat_result | None:
    """lstat of `path`; None unless it is a regular file (never follows a symlink)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def inside(root: Path, path: Path) -> bool:
    """True when `path`'s real folder lies under `root` (a symlinked folder escapes)."""
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(path.parent)
    return real_parent == real_root or real_parent.startswith(real_root + os.sep)


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


def register(ctx: Context, path: Path) -> Item | None:
    """Stage 1: find or create the row for an inbox file; None when nothing is to do.

    A path already known with the same size and mtime continues where it stopped
    (NEW → hash, HASHED → dedup) or is skipped (UNIQUE, ERROR); a changed file is
    reset to NEW and hashed again.
    """
    path = Path(path)
    st = regular_file_stat(path)
    if st is None or not inside(ctx.roots.inbox, path):
        logger.bind(event="intake", status="skipped").info(
            "not a regular inbox file: {}", path
        )
        return None
    rel = path.relative_to(ctx.roots.inbox).as_posix()
    item, created = ctx.writer.call(lambda: _upsert(ctx, path, rel, st))
    if created and item is not None:
        logger.bind(event="intake", file_id=item.file_id, status="NEW").info(
            "new file {}", rel
        )
    return item


# Raw SQL on the per-file path: peewee's query building cost far more than SQLite.
_FIND_IN_INBOX = (
    "SELECT id, size, mtime_ns, status, sha256, phash FROM files"
    f" WHERE current_path = ? AND status IN {sql_list(FileStatus.IN_INBOX)}"
    " ORDER BY id DESC LIMIT 1"
)
_INSERT = (
    "INSERT INTO files (original_path, rel_path, current_path, size, mtime_ns, status,"
    " attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'NEW', 0, ?, ?)"
)


def _upsert(
    ctx: Context, path: Path, rel: str, st: os.stat_result
) -> tuple[Item | None, bool]:
    """On the writer thread: (item to process or None, whether the row is new)."""
    con = database_proxy.connection()
    found = con.execute(_FIND_IN_INBOX, (str(path),)).fetchone()
    if found is None:
        now = sql_time(utcnow())
        values = (str(path), rel, str(path), st.st_size, st.st_mtime_ns, now, now)
        return Item(con.execute(_INSERT, values).lastrowid, path), True
    file_id, size, mtime_ns, status, sha256, phash = found
    if (size, mtime_ns) == (st.st_size, st.st_mtime_ns):
        return _resume(file_id, status, sha256, phash, path), False
    _reset(ctx, File.get_by_id(file_id), st)
    return Item(file_id, path), False


def _resume(
    file_id: int, status: str, sha256: str | None, phash: int | None, path: Path
) -> Item | None:
    if status == FileStatus.NEW:
        return Item(file_id, path)
    if status == FileStatus.HASHED:
        return Item(file_id, path, sha256, phash)
    return None


def _reset(ctx: Context, row: File, st: os.stat_result) -> None:
    """The file at a known path changed before it was batched: start it over."""
    if ctx.near_index is not None:
        ctx.near_index.remove(row.id)
    File.update(
        status=FileStatus.NEW,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=None,
        phash=None,
        error=None,
        near_duplicate_of=None,
        near_distance=None,
        duplicate_of=None,
        updated_at=utcnow(),
    ).where(File.id == row.id).execute()
    logger.bind(event="intake", file_id=row.id, status="NEW").info(
        "changed file {}", row.rel_path
    )
