"""Adoption: record an existing folder of photos in place, so later arrivals de-duplicate.

Nothing under an adopted folder is ever moved, renamed or written: every regular file
(symlinks not followed, FIFOs, sockets and devices skipped, `watcher.ignore_patterns`
honoured) is hashed through the intake's hash code under `max_parallel_fs_ops`, dated
as the sort would date it and recorded as `SORTED` with `source = 'adopted'` and no
batch. A file identical to one already accepted becomes `DUPLICATE` of it and stays
where it is. Rows are committed chunk by chunk in path order, so a killed adoption
keeps what it recorded; the root stays `ADOPTING` and the next start resumes it, and
a re-run hashes only files that are new or whose size or mtime changed.

A folder inside `sorted_dir` is a `library` root. A folder outside every configured
folder may be adopted by explicit path only and becomes a read-only `reference` root.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from loguru import logger

from pipeline.context import Context
from pipeline.hash_stage import hash_file
from pipeline.hashing import FileChanged
from pipeline.intake import walk_inbox
from pipeline.jobs import JobHandle
from pipeline.library_roots import (  # noqa: F401 - re-exported (service, tests)
    AdoptRefused,
    Target,
    interrupted,
    is_read_only,
    reference_roots,
    resolve_target,
)
from pipeline.media import is_sidecar
from pipeline.models import (
    FileSource,
    FileStatus,
    LibraryRoot,
    RootState,
    database_proxy,
    sql_list,
    sql_time,
    utcnow,
)
from pipeline.sort_plan import Member, plan_batch
from pipeline.states import check_file_transition

# Adopted rows whose file changed are decided again (SORTED or DUPLICATE).
REDECIDED = (FileStatus.SORTED, FileStatus.DUPLICATE)
CHUNK = 8  # files hashed by one task and committed in one transaction; small,
# so the last tasks leave no thread idle for long (the tail of a pool)
LISTED = 1000  # duplicates listed in a job's result (all are in the database)


@dataclass
class Entry:
    """One file to record: found by the walk, then hashed and dated by a worker."""

    path: str
    rel: str
    row_id: int | None = None  # set when an adopted row at this path changed
    old_status: str | None = None
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None
    phash: int | None = None
    capture_time: Any = None
    capture_source: str | None = None
    problem: str | None = None  # why it was not hashed (left for the next run)


@dataclass
class Report:
    """What one root's adoption did, as the job result shows it."""

    path: str
    kind: str
    found: int = 0
    unchanged: int = 0
    recorded: int = 0
    updated: int = 0
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    duplicate_count: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, str]] = field(default_factory=list)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "kind": self.kind,
            "found": self.found,
            "unchanged": self.unchanged,
            "recorded": self.recorded,
            "updated": self.updated,
            "duplicate_count": self.duplicate_count,
            "duplicates": self.duplicates[:LISTED],
            "skipped": self.skipped,
            "problems": self.problems[:LISTED],
        }


# ----------------------------------------------------------------------- the walk


def _known(
    root: Path,
) -> dict[str, tuple[int, int | None, int | None, str | None, str]]:
    """path -> (id, size, mtime_ns, source, status) of every row under `root`."""
    prefix = str(root).rstrip("/") + "/"
    # '0' follows '/' in byte order: the range is "every path starting with prefix".
    cursor = database_proxy.connection().execute(
        "SELECT current_path, id, size, mtime_ns, source, status FROM files"
        " WHERE current_path >= ? AND current_path < ? ORDER BY id",
        (prefix, prefix[:-1] + "0"),
    )
    return {row[0]: row[1:] for row in cursor}


def plan(ctx: Context, target: Target, report: Report) -> list[Entry]:
    """Files under `target` that are new, or adopted and changed since recorded."""
    known = _known(target.path)
    patterns = ctx.settings.watcher.ignore_patterns
    todo: list[Entry] = []
    for path in sorted(str(p) for p in walk_inbox(target.path, patterns)):
        report.found += 1
        try:
            st = os.lstat(path)
        except OSError:
            report.skip("vanished")
            continue
        if st.st_size == 0:
            report.skip("empty")
            continue
        rel = os.path.relpath(path, target.path)
        row = known.get(path)
        if row is None:
            todo.append(Entry(path, rel))
        elif (row[1], row[2]) == (st.st_size, st.st_mtime_ns):
            report.unchanged += 1
        elif row[3] == FileSource.ADOPTED and row[4] in REDECIDED:
            todo.append(Entry(path, rel, row_id=row[0], old_status=row[4]))
        else:
            # Sorted by the pipeline, or already found MISSING/CORRUPT: verify's.
            report.skip("changed since recorded (see verify)")
    return todo


# -------------------------------------------------------------------- hashing


def _hash_chunk(ctx: Context, entries: list[Entry]) -> list[Entry]:
    """In a worker: hash every entry, then date them as the sort would."""
    for entry in entries:
        try:
            digest, image_hash = hash_file(ctx, Path(entry.path))
        except (FileChanged, FileNotFoundError, ValueError) as exc:
            entry.problem = f"not read (will be retried): {exc}"
            continue
        except OSError as exc:
            entry.problem = f"cannot read: {exc.strerror or exc}"
            continue
        entry.sha256, entry.phash = digest.sha256, image_hash
        entry.size, entry.mtime_ns = digest.size, digest.mtime_ns
    hashed = [e for e in entries if e.sha256]
    members = [Member(0, e.path, e.rel, e.size, e.sha256) for e in hashed]
    for entry, planned in zip(hashed, plan_batch(ctx, members), strict=True):
        entry.capture_time, entry.capture_source = planned.when, planned.source
    return entries


def _chunks(entries: list[Entry]) -> Iterator[list[Entry]]:
    for start in range(0, len(entries), CHUNK):
        yield entries[start : start + CHUNK]


# ----------------------------------------------------------------- recording


_ACCEPTED_TWIN = (
    "SELECT id, current_path FROM files WHERE sha256 = ? AND id != ?"
    f" AND status IN {sql_list(FileStatus.ACCEPTED)} ORDER BY id LIMIT 1"
)
_INSERT = (
    "INSERT INTO files (original_path, rel_path, current_path, size, mtime_ns, sha256,"
    " phash, status, duplicate_of, capture_time, capture_source, attempts, source,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)"
)
_UPDATE = (
    "UPDATE files SET size = ?, mtime_ns = ?, sha256 = ?, phash = ?, status = ?,"
    " duplicate_of = ?, near_duplicate_of = NULL, near_distance = NULL,"
    " capture_time = ?, capture_source = ?, error = NULL, updated_at = ?"
    " WHERE id = ? AND source = 'adopted'"
)


def _twin(
    con: sqlite3.Connection, entry: Entry, self_id: int
) -> tuple[int, str] | None:
    if is_sidecar(entry.path):
        return None  # identical sidecars are kept, as in dedup
    found = con.execute(_ACCEPTED_TWIN, (entry.sha256, self_id)).fetchone()
    return (found[0], found[1]) if found else None


def _recorded(con: sqlite3.Connection, path: str) -> bool:
    found = con.execute("SELECT 1 FROM files WHERE current_path = ?", (path,))
    return found.fetchone() is not None


def record(ctx: Context, entries: list[Entry], report: Report) -> None:
    """On the writer thread: insert or update the rows of one hashed chunk."""
    con = database_proxy.connection()
    now = sql_time(utcnow())
    for entry in entries:
        if entry.sha256 is None:
            continue
        renewed = entry.old_status == FileStatus.DUPLICATE
        if renewed:
            # Nothing refers to a DUPLICATE row (duplicate_of and near_duplicate_of
            # name accepted rows) and DUPLICATE is final: the changed file is
            # recorded afresh.
            con.execute(
                "DELETE FROM files WHERE id = ? AND status = ?"
                " AND source = 'adopted'",
                (entry.row_id, FileStatus.DUPLICATE),
            )
            entry.row_id = None
        if entry.row_id is None and _recorded(con, entry.path):
            continue  # recorded meanwhile (a sort put a file here)
        twin = _twin(con, entry, entry.row_id or 0)
        status = FileStatus.DUPLICATE if twin else FileStatus.SORTED
        when = sql_time(entry.capture_time) if entry.capture_time else None
        values = (entry.sha256, entry.phash, status, twin[0] if twin else None)
        if entry.row_id is None:
            file_id = con.execute(
                _INSERT,
                (entry.path, entry.rel, entry.path, entry.size, entry.mtime_ns)
                + values
                + (when, entry.capture_source, FileSource.ADOPTED, now, now),
            ).lastrowid
            if renewed:
                report.updated += 1
            else:
                report.recorded += 1
        else:
            file_id = entry.row_id
            check_file_transition(entry.old_status or status, status)
            con.execute(
                _UPDATE,
                (entry.size, entry.mtime_ns)
                + values
                + (when, entry.capture_source, now, file_id),
            )
            report.updated += 1
            if ctx.near_index is not None:
                ctx.near_index.remove(file_id)
        if twin:
            report.duplicate_count += 1
            if len(report.duplicates) < LISTED:
                report.duplicates.append(
                    {
                        "file_id": file_id,
                        "path": entry.path,
                        "duplicate_of": twin[0],
                        "duplicate_of_path": twin[1],
                    }
                )
        elif entry.phash is not None and ctx.near_index is not None:
            ctx.near_index.add(file_id, entry.phash)


def _begin(target: Target) -> None:
    now = utcnow()
    LibraryRoot.insert(
        path=str(target.path),
        kind=target.kind,
        state=RootState.ADOPTING,
        created_at=now,
        updated_at=now,
    ).on_conflict(
        conflict_target=[LibraryRoot.path],
        update={LibraryRoot.state: RootState.ADOPTING, LibraryRoot.updated_at: now},
    ).execute()


def _finish(target: Target) -> None:
    prefix = str(target.path).rstrip("/") + "/"
    files, duplicates = (
        database_proxy.connection()
        .execute(
            "SELECT count(*), coalesce(sum(status = ?), 0) FROM files"
            " WHERE current_path >= ? AND current_path < ? AND source = 'adopted'",
            (FileStatus.DUPLICATE, prefix, prefix[:-1] + "0"),
        )
        .fetchone()
    )
    now = utcnow()
    LibraryRoot.update(
        state=RootState.ADOPTED,
        files=files,
        duplicates=duplicates,
        adopted_at=now,
        updated_at=now,
    ).where(LibraryRoot.path == str(target.path)).execute()


# ------------------------------------------------------------------------- job


def adopt_root(
    ctx: Context, target: Target, handle: JobHandle, offset: int = 0
) -> Report:
    """Adopt one folder (see the module docstring); `offset` counts earlier roots."""
    log = logger.bind(event="adopt")
    report = Report(str(target.path), target.kind)
    ctx.writer.call(lambda: _begin(target))
    todo = plan(ctx, target, report)
    handle.set_total(offset + len(todo))
    log.info(
        "adopting {} ({}): {} files, {} to hash",
        target.path,
        target.kind,
        report.found,
        len(todo),
    )
    workers = ctx.settings.system.max_parallel_fs_ops
    with ThreadPoolExecutor(workers, thread_name_prefix="adopt") as pool:
        # map() yields in submission order: rows are committed in path order, so
        # "the first" of identical files is the first by path, run after run.
        for entries in pool.map(lambda c: _hash_chunk(ctx, c), _chunks(todo)):
            ctx.writer.call(partial(record, ctx, entries, report))
            problems = [e for e in entries if e.problem]
            report.problems += [
                {"path": e.path, "problem": e.problem or ""} for e in problems
            ]
            handle.advance(len(entries), len(problems))
    ctx.writer.call(lambda: _finish(target))
    log.bind(status="ADOPTED").info(
        "adopted {}: {} recorded, {} updated, {} duplicates, {} unchanged, {} problems",
        target.path,
        report.recorded,
        report.updated,
        report.duplicate_count,
        report.unchanged,
        len(report.problems),
    )
    return report


def adopt_job(
    ctx: Context, handle: JobHandle, paths: list[str | None]
) -> dict[str, Any]:
    """Adopt each folder in turn (none: sorted_dir); a job function for pipeline.jobs.

    A folder that cannot be adopted (any more) is reported and the others go on;
    the job fails only when none could be.
    """
    reports: list[Report] = []
    refused: list[dict[str, str]] = []
    for path in paths or [None]:
        try:
            target = resolve_target(ctx.roots, path)
        except AdoptRefused as exc:
            logger.bind(event="adopt", status="refused").warning("{}", exc)
            refused.append({"path": str(path), "error": str(exc)})
            handle.advance(0, 1)
            continue
        reports.append(adopt_root(ctx, target, handle, offset=handle.done))
    if not reports:
        raise AdoptRefused("; ".join(r["error"] for r in refused))
    recorded = sum(r.recorded + r.updated for r in reports)
    duplicates = sum(r.duplicate_count for r in reports)
    return {
        "message": f"{recorded} files recorded in place, {duplicates} duplicates",
        "roots": [r.as_dict() for r in reports],
        "refused": refused,
    }
