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
from pipeline.models import File, FileStatus, utcnow


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
    return ctx.writer.call(lambda: _upsert(ctx, path, rel, st))


def _upsert(ctx: Context, path: Path, rel: str, st: os.stat_result) -> Item | None:
    row = (
        File.select()
        .where(File.current_path == str(path), File.status.in_(FileStatus.IN_INBOX))
        .order_by(File.id.desc())
        .first()
    )
    if row is None:
        row = File.create(
            original_path=str(path),
            rel_path=rel,
            current_path=str(path),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
        logger.bind(event="intake", file_id=row.id, status=row.status).info(
            "new file {}", rel
        )
        return Item(row.id, path)
    if row.size == st.st_size and row.mtime_ns == st.st_mtime_ns:
        return _resume(row, path)
    _reset(ctx, row, st)
    return Item(row.id, path)


def _resume(row: File, path: Path) -> Item | None:
    if row.status == FileStatus.NEW:
        return Item(row.id, path)
    if row.status == FileStatus.HASHED:
        return Item(row.id, path, row.sha256, row.phash)
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
