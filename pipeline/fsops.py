"""Crash-safe, journaled, never-overwriting file moves: the only way a stage moves a file.

A move is written to `move_journal` (committed) before anything on disk changes and is
marked DONE, together with the file's new row values, after. Same filesystem: hard
link to the destination (fails instead of overwriting), then unlink the source. Across
filesystems: copy to a temp name beside the destination, fsync, verify size and
SHA-256, link into place, then unlink the source. `recover()` settles every entry a
crash left PENDING so that the database and the disk agree.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from pipeline.db import Writer
from pipeline.models import (
    File,
    FileStatus,
    MoveJournal,
    MoveState,
    database_proxy,
    sql_time,
    utcnow,
)

TEMP_PREFIX = ".mp-partial-"
CHUNK = 1 << 20
# errnos meaning "this filesystem cannot hard-link here": fall back to copying.
NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
Checkpoint = Callable[[str], None]


class MoveError(Exception):
    """A move that could not be done; the source is untouched."""


@dataclass(frozen=True)
class MoveRequest:
    """Move `src` to `dst` (a free name is chosen on a clash) and update file `file_id`."""

    src: Path
    dst: Path
    file_id: int | None = None
    new_status: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class MoveResult:
    request: MoveRequest
    dst: Path | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def candidate_names(dst: Path) -> Iterable[Path]:
    """`dst`, then `name_1.ext`, `name_2.ext`, …"""
    yield dst
    stem, suffix = dst.stem, dst.suffix
    n = 1
    while True:
        yield dst.with_name(f"{stem}_{n}{suffix}")
        n += 1


def regular_file(path: Path) -> os.stat_result:
    """lstat of a regular file; MoveError for a symlink, FIFO, device or missing file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise MoveError(f"source is missing: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MoveError(f"not a regular file: {path}")
    return st


def sha256_of(path: Path) -> str:
    """SHA-256 of a file, streamed; never follows a symlink."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a folder so a rename or link in it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` atomically: temp file beside it, fsync, rename, fsync the folder."""
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{path.name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_empty_tree(folder: Path) -> None:
    """Remove `folder` and its sub-folders if, and as far as, they hold no files."""
    if not folder.is_dir() or folder.is_symlink():
        return
    subs = [p for p in folder.rglob("*") if p.is_dir() and not p.is_symlink()]
    for sub in sorted(subs, key=lambda p: len(p.parts), reverse=True) + [folder]:
        try:
            sub.rmdir()
        except OSError:
            pass


def same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def exists(path: Path) -> bool:
    return os.path.lexists(path)


def finish_rows(done: list[tuple[MoveJournal, Path]]) -> None:
    """Mark journal entries DONE and point their file rows at the new paths.

    On the writer thread. Raw statements: this runs once per moved file, and peewee's
    query building costs far more than SQLite itself here.
    """
    now = sql_time(utcnow())
    con = database_proxy.connection()
    con.executemany(
        "UPDATE move_journal SET dst = ?, state = ?, finished_at = ? WHERE id = ?",
        [(str(dst), MoveState.DONE, now, e.id) for e, dst in done],
    )
    con.executemany(
        "UPDATE files SET current_path = ?, updated_at = ?, status = COALESCE(?, status),"
        " target_path = CASE WHEN ? = 'SORTED' THEN ? ELSE target_path END WHERE id = ?",
        [
            (str(dst), now, e.new_status, e.new_status, str(dst), e.file_id)
            for e, dst in done
            if e.file_id is not None
        ],
    )
    for entry, dst in done:
        entry.dst, entry.state = str(dst), MoveState.DONE


def finish_row(entry: MoveJournal, dst: Path) -> None:
    """`finish_rows` for one entry."""
    finish_rows([(entry, dst)])


def close_entry(entry: MoveJournal, state: str, error: str | None) -> None:
    """Mark an entry ABANDONED (source untouched) or FAILED (file row becomes ERROR)."""
    entry.state, entry.error, entry.finished_at = state, error, utcnow()
    entry.save()
    if state == MoveState.FAILED and entry.file_id is not None:
        File.update(status=FileStatus.ERROR, error=error, updated_at=utcnow()).where(
            File.id == entry.file_id
        ).execute()


class Mover:
    """Performs journaled moves. Thread-safe; `fs_slots` bounds concurrent file I/O.

    `force_copy` takes the cross-filesystem path even on one filesystem (tests, and
    filesystems without hard links). `checkpoint(step)` is called after each step so
    tests can kill the process there.
    """

    def __init__(
        self,
        writer: Writer,
        *,
        fs_slots: threading.Semaphore | None = None,
        force_copy: bool = False,
        checkpoint: Checkpoint | None = None,
    ):
        self.writer = writer
        self.fs_slots = fs_slots
        self.force_copy = force_copy
        self.checkpoint: Checkpoint = checkpoint or (lambda step: None)
        self._lock = threading.Lock()
        self._reserved: set[str] = set()

    def move(self, request: MoveRequest) -> Path:
        """Move one file; returns the final destination or raises MoveError."""
        result = self.move_many([request])[0]
        if result.error or result.dst is None:
            raise MoveError(result.error or "move failed")
        return result.dst

    def move_many(self, requests: list[MoveRequest]) -> list[MoveResult]:
        """Move many files with one journal commit before and one after."""
        planned, results = self._plan(requests)
        if not planned:
            return [results[i] for i in range(len(requests))]
        try:
            entries = self.writer.call(
                lambda: [self._journal(*p) for p in planned], durable=True
            )
            self.checkpoint("journaled")
            done = self._execute_all(planned, entries, results)
            # One fsync per touched folder, before the moves are recorded as DONE.
            folders = {os.path.dirname(d) for _, d in done}
            folders |= {os.path.dirname(e.src) for e, _ in done}
            for folder in folders:
                fsync_dir(Path(folder))
            self.writer.call(lambda: finish_rows(done))
            self.checkpoint("finished")
        finally:
            self._release([str(p[2]) for p in planned])
        return [results[i] for i in range(len(requests))]

    # planning ----------------------------------------------------------------------

    def _plan(
        self, requests: list[MoveRequest]
    ) -> tuple[list[tuple[int, MoveRequest, Path, str]], dict[int, MoveResult]]:
        planned, results = [], {}
        folder_devices: dict[Path, int] = (
            {}
        )  # each destination folder made and stat'ed once
        for index, request in enumerate(requests):
            try:
                src_dev = regular_file(request.src).st_dev
                folder = request.dst.parent
                if folder not in folder_devices:
                    folder.mkdir(parents=True, exist_ok=True)
                    folder_devices[folder] = os.stat(folder).st_dev
                same_fs = src_dev == folder_devices[folder] and not self.force_copy
                method = "link" if same_fs else "copy"
                planned.append((index, request, self._reserve(request.dst), method))
            except (MoveError, OSError) as exc:
                results[index] = MoveResult(request, None, _reason(exc))
        return planned, results

    def _reserve(self, dst: Path) -> Path:
        with self._lock:
            for name in candidate_names(dst):
                if str(name) not in self._reserved and not exists(name):
                    self._reserved.add(str(name))
                    return name
        raise AssertionError("unreachable")

    def _release(self, names: list[str]) -> None:
        with self._lock:
            self._reserved.difference_update(names)

    @staticmethod
    def _journal(
        index: int, request: MoveRequest, dst: Path, method: str
    ) -> MoveJournal:
        """Insert a PENDING entry (writer thread; raw SQL, see `finish_rows`)."""
        tmp = None
        if method == "copy":
            tmp = str(dst.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{dst.name}"))
        entry = MoveJournal(
            src=str(request.src),
            dst=str(dst),
            tmp=tmp,
            method=method,
            state=MoveState.PENDING,
            file_id=request.file_id,
            new_status=request.new_status,
            sha256=request.sha256,
            created_at=utcnow(),
        )
        cursor = database_proxy.connection().execute(
            "INSERT INTO move_journal (src, dst, tmp, method, state, file_id,"
            " new_status, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.src,
                entry.dst,
                entry.tmp,
                entry.method,
                entry.state,
                entry.file_id,
                entry.new_status,
                entry.sha256,
                sql_time(entry.created_at),
            ),
        )
        entry.id = cursor.lastrowid
        return entry

    # execution ---------------------------------------------------------------------

    def _execute_all(
        self,
        planned: list[tuple[int, MoveRequest, Path, str]],
        entries: list[MoveJournal],
        results: dict[int, MoveResult],
    ) -> list[tuple[MoveJournal, Path]]:
        done = []
        for (index, request, _, _), entry in zip(planned, entries, strict=True):
            try:
                with self._slot():
                    final = self._execute(entry)
                done.append((entry, final))
                results[index] = MoveResult(request, final)
            except (MoveError, OSError) as exc:
                final = self._settle_failure(entry, _reason(exc))
                if final is not None:
                    done.append((entry, final))
                    results[index] = MoveResult(request, final)
                else:
                    results[index] = MoveResult(request, None, _reason(exc))
        return done

    def _settle_failure(self, entry: MoveJournal, reason: str) -> Path | None:
        """Let the disk say how a failed move ended, as recovery would after a crash."""
        log = logger.bind(event="move", file_id=entry.file_id, status="failed")
        log.warning("move {} -> {} failed: {}", entry.src, entry.dst, reason)
        try:
            state, dst, error = settle(entry)
        except OSError as exc:
            state, dst, error = (
                MoveState.FAILED,
                Path(entry.dst),
                f"{reason}; {_reason(exc)}",
            )
        if state == MoveState.DONE:
            return dst
        message = reason if state == MoveState.ABANDONED else (error or reason)
        self.writer.call(lambda: close_entry(entry, state, message))
        return None

    def _slot(self) -> AbstractContextManager[object]:
        return self.fs_slots if self.fs_slots is not None else nullcontext()

    def _execute(self, entry: MoveJournal) -> Path:
        if entry.method == "link":
            try:
                return self._link_move(entry)
            except OSError as exc:
                if exc.errno not in NO_LINK:
                    raise
                self._switch_to_copy(entry)
        return self._copy_move(entry)

    def _switch_to_copy(self, entry: MoveJournal) -> None:
        dst = Path(entry.dst)
        tmp = dst.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{dst.name}")

        def update() -> None:
            entry.method, entry.tmp = "copy", str(tmp)
            entry.save()

        self.writer.call(update, durable=True)

    def _link_into_place(self, entry: MoveJournal, source: Path) -> Path:
        """Hard-link `source` at the entry's destination, moving on to a free name on a clash."""
        dst = Path(entry.dst)
        for _ in range(1000):
            try:
                os.link(source, dst, follow_symlinks=False)
                return dst
            except FileExistsError:
                dst = self._rename_target(entry, dst)
        raise MoveError(f"no free name for {entry.dst}")

    def _rename_target(self, entry: MoveJournal, taken: Path) -> Path:
        with self._lock:
            new = next(
                n
                for n in candidate_names(taken)
                if not exists(n) and str(n) not in self._reserved
            )
            self._reserved.add(str(new))

        def update() -> None:
            entry.dst = str(new)
            entry.save()

        self.writer.call(update, durable=True)
        return new

    def _link_move(self, entry: MoveJournal) -> Path:
        # No second lstat: link() never opens or follows the source, so a file swapped
        # for a symlink or FIFO since planning is moved as what it is, never read.
        src = Path(entry.src)
        dst = self._link_into_place(entry, src)
        self.checkpoint("linked")
        os.unlink(src)
        self.checkpoint("unlinked")
        return dst

    def _copy_move(self, entry: MoveJournal) -> Path:
        src, tmp = Path(entry.src), Path(str(entry.tmp))
        try:
            self._copy_verified(src, tmp, entry.sha256, self.checkpoint)
            self.checkpoint("copied")
            dst = self._link_into_place(entry, tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.checkpoint("placed")
        os.unlink(tmp)
        # Across filesystems nothing orders the two journals: make the copy durable
        # before the source goes.
        fsync_dir(dst.parent)
        self.checkpoint("tmp_removed")
        os.unlink(src)
        self.checkpoint("unlinked")
        return dst

    @staticmethod
    def _copy_verified(
        src: Path, tmp: Path, expected: str | None, checkpoint: Checkpoint
    ) -> None:
        src_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            st = os.fstat(src_fd)
            if not stat.S_ISREG(st.st_mode):
                raise MoveError(f"not a regular file: {src}")
            source_hash = _copy_fd(src_fd, tmp, checkpoint)
        finally:
            os.close(src_fd)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.lstat(tmp).st_size != st.st_size:
            raise MoveError(f"copy of {src} has the wrong size")
        if sha256_of(tmp) != source_hash or (expected and expected != source_hash):
            raise MoveError(f"copy of {src} does not verify (SHA-256 differs)")


def _copy_fd(src_fd: int, tmp: Path, checkpoint: Checkpoint) -> str:
    digest = hashlib.sha256()
    out_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        while chunk := os.read(src_fd, CHUNK):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(out_fd, view) :]
            checkpoint("copying")
        os.fsync(out_fd)
    finally:
        os.close(out_fd)
    return digest.hexdigest()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


# recovery ---------------------------------------------------------------------------


def recover(writer: Writer) -> dict[str, int]:
    """Settle every PENDING journal entry; returns counts by outcome state."""
    counts = {MoveState.DONE: 0, MoveState.ABANDONED: 0, MoveState.FAILED: 0}
    pending = list(MoveJournal.select().where(MoveJournal.state == MoveState.PENDING))
    for entry in pending:
        state, dst, error = settle(entry)
        if state == MoveState.DONE:
            writer.call(lambda e=entry, d=dst: finish_row(e, d))
        else:
            writer.call(lambda e=entry, s=state, r=error: close_entry(e, s, r))
        counts[state] += 1
        logger.bind(event="recover", file_id=entry.file_id, status=state).info(
            "journal entry {} settled as {}: {} -> {}",
            entry.id,
            state,
            entry.src,
            entry.dst,
        )
    return counts


def settle(entry: MoveJournal) -> tuple[str, Path, str | None]:
    """Decide, from what is on disk, how an interrupted move ended; fixes the disk up."""
    src, dst = Path(entry.src), Path(entry.dst)
    if entry.method == "link":
        return _settle_link(src, dst)
    return _settle_copy(src, dst, Path(str(entry.tmp)), entry.sha256)


def _settle_link(src: Path, dst: Path) -> tuple[str, Path, str | None]:
    if exists(dst) and exists(src):
        if same_file(src, dst):
            os.unlink(src)
            return MoveState.DONE, dst, None
        return MoveState.ABANDONED, dst, "destination taken by another file; not moved"
    if exists(dst):
        return MoveState.DONE, dst, None
    if exists(src):
        return MoveState.ABANDONED, dst, "interrupted before the move"
    return MoveState.FAILED, dst, "file missing from both source and destination"


def _settle_copy(
    src: Path, dst: Path, tmp: Path, expected: str | None
) -> tuple[str, Path, str | None]:
    if exists(tmp) and exists(dst) and same_file(tmp, dst):
        os.unlink(tmp)
    if exists(dst):
        if not exists(src):
            return MoveState.DONE, dst, None
        if sha256_of(dst) == sha256_of(src):
            os.unlink(src)
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


def _drop_partial(tmp: Path, src: Path) -> None:
    """Remove our partial copy; only called while the source is still in place."""
    if exists(tmp) and exists(src):
        os.unlink(tmp)
