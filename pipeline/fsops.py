"""Crash-safe, journaled, never-overwriting file moves: the only way a stage moves a file.

A move is written to `move_journal` (committed) before anything on disk changes and is
marked DONE, together with the file's new row values, after. Same filesystem: hard
link to the destination (fails instead of overwriting), then unlink the source. Across
filesystems: copy to a temp name beside the destination, fsync, verify size and
SHA-256, link into place, then unlink the source. `recover()` settles every entry a
crash left PENDING so that the database and the disk agree.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from loguru import logger

from pipeline.db import Writer
from pipeline.models import FileStatus, MoveState, database_proxy, sql_time, utcnow
from pipeline.states import IllegalTransition, check_file_transition
from pipeline.store import set_file_status

TEMP_PREFIX = ".mp-partial-"
CHUNK = 1 << 20
# errnos meaning "this filesystem cannot hard-link here": fall back to copying.
NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}
Checkpoint = Callable[[str], None]
StrPath = str | os.PathLike[str]


class MoveError(Exception):
    """A move that could not be done; the source is untouched.

    `errno` is the OSError's when one caused it (see pipeline/failures.py).
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


@dataclass(frozen=True)
class MoveRequest:
    """Move `src` to `dst` (a free name is chosen on a clash) and update file `file_id`."""

    src: StrPath
    dst: StrPath
    file_id: int | None = None
    new_status: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class MoveResult:
    request: MoveRequest
    final: str | None
    error: str | None = None
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def dst(self) -> Path | None:
        """Where the file is now (None when it did not move)."""
        return None if self.final is None else Path(self.final)


def split_suffix(path: str) -> tuple[str, str]:
    """(`path` without its suffix, the suffix), the suffix as pathlib's `.suffix`."""
    dot = path.rfind(".")
    if dot <= path.rfind("/") + 1 or dot == len(path) - 1:
        return path, ""
    return path[:dot], path[dot:]


def candidate_names(dst: str) -> Iterator[str]:
    """`dst`, then `name_1.ext`, `name_2.ext`, … (suffix as pathlib sees it)."""
    yield dst
    stem, suffix = split_suffix(dst)
    n = 1
    while True:
        yield f"{stem}_{n}{suffix}"
        n += 1


def regular_file(path: StrPath) -> os.stat_result:
    """lstat of a regular file; MoveError for a symlink, FIFO, device or missing file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise MoveError(f"source is missing: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise MoveError(f"not a regular file: {path}")
    return st


def sha256_of(path: StrPath) -> str:
    """SHA-256 of a file, streamed; never follows a symlink."""
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: StrPath) -> None:
    """fsync a folder so a rename or link in it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), name)
    except (AttributeError, OSError):
        return None


_SYNCFS = _libc_function("syncfs")
_FSTATFS = _libc_function("fstatfs")
# Filesystems whose syncfs() writes back everything, directory entries included
# (statfs f_type). Elsewhere (FUSE, network filesystems) it may do less than an
# fsync of each folder would, so those keep the fsyncs.
SYNCFS_FILESYSTEMS = {
    0xEF53: "ext2/3/4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0xF2F52010: "f2fs",
    0x2FC12FC1: "zfs",
}
# From this many folders on one filesystem, one syncfs() is cheaper than an fsync
# each (ext4: ~0.1 ms per folder fsync, a few ms for the syncfs of a quiet disk).
SYNCFS_FROM = 32


def sync_folders(folders: dict[str, int]) -> None:
    """Make the entries of `folders` (path -> st_dev) durable, a filesystem at a time."""
    by_device: dict[int, list[str]] = {}
    for folder, device in folders.items():
        by_device.setdefault(device, []).append(folder)
    for paths in by_device.values():
        if len(paths) < SYNCFS_FROM or not _syncfs(paths[0]):
            for folder in paths:
                fsync_dir(folder)


def _syncfs(folder: str) -> bool:
    """syncfs() the filesystem holding `folder` if it is one of SYNCFS_FILESYSTEMS.

    False when that could not be done: the caller fsyncs each folder instead.
    """
    if _SYNCFS is None:
        return False
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return _fs_type(fd) in SYNCFS_FILESYSTEMS and _SYNCFS(fd) == 0
    finally:
        os.close(fd)


def filesystem_type(path: StrPath) -> int | None:
    """statfs f_type of the filesystem holding the folder `path`, or None."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return _fs_type(fd)
    finally:
        os.close(fd)


def _fs_type(fd: int) -> int | None:
    info = ctypes.create_string_buffer(256)  # struct statfs; f_type comes first
    if _FSTATFS is None or _FSTATFS(fd, info) != 0:
        return None
    return ctypes.c_long.from_buffer(info).value


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


def same_file(a: StrPath, b: StrPath) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def exists(path: StrPath) -> bool:
    return os.path.lexists(path)


# The source's real folder ------------------------------------------------------------
#
# An inbox writer can replace a folder with a symlink after its files were hashed;
# a move by path would then take (link, or copy and delete) a file from wherever the
# link points. The source's folder is therefore opened one component at a time from
# `/` with O_NOFOLLOW, and the move works relative to that descriptor: whatever the
# path names later, only a file in the real folder is linked, read or unlinked.

_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW
# Filesystems that keep mtime coarser than ns (FAT: 2 s) may round a copy's mtime.
MTIME_SLACK_NS = 2_000_000_000


class SwappedPath(OSError):
    """A folder on the source's path is a symlink (or no folder) at move time."""

    def __init__(self, path: str, reason: str):
        super().__init__(
            errno.ELOOP, f"source folder is not a real folder ({reason})", path
        )


def open_folder(folder: str) -> int:
    """A descriptor of `folder`, refusing a symlink anywhere on its path."""
    if not os.path.isabs(folder):
        raise SwappedPath(folder, "not an absolute path")
    fd = os.open("/", _DIR_FLAGS)
    try:
        for part in folder.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                raise SwappedPath(folder, "'..' in the path")
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise SwappedPath(folder, f"{part!r} is a symlink") from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


class Folders:
    """Source folders opened once per batch of moves (see `open_folder`)."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def locate(self, path: str) -> tuple[int, str]:
        """(descriptor of the real folder of `path`, its file name)."""
        folder, name = os.path.split(path)
        fd = self._fds.get(folder)
        if fd is None:
            fd = self._fds[folder] = open_folder(folder)
        return fd, name

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def unlink_inside(path: str) -> None:
    """Unlink `path` only through its real folder (never through a symlinked one)."""
    fd = open_folder(os.path.dirname(path))
    try:
        os.unlink(os.path.basename(path), dir_fd=fd)
    finally:
        os.close(fd)


def hashed_identity(file_ids: list[int]) -> dict[int, tuple[int | None, int | None]]:
    """(size, mtime_ns) recorded when each file was hashed, by id."""
    found: dict[int, tuple[int | None, int | None]] = {}
    if not file_ids:
        return found
    con = database_proxy.connection()
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for file_id, size, mtime_ns in con.execute(
            f"SELECT id, size, mtime_ns FROM files WHERE id IN ({marks})", chunk
        ):
            found[file_id] = (size, mtime_ns)
    return found


# the journal --------------------------------------------------------------------------
#
# Entries are plain objects and the SQL is raw: a batch moves thousands of files, and
# peewee's model building and query compiling cost far more than SQLite itself here.


@dataclass(slots=True)
class Entry:
    """One `move_journal` row as the mover and recovery work with it."""

    src: str
    dst: str
    method: str
    file_id: int | None = None
    new_status: str | None = None
    sha256: str | None = None
    tmp: str | None = None
    id: int = 0
    state: str = MoveState.PENDING
    # Not journaled: what the source was when planned (inode) and hashed (size,
    # mtime), re-checked at the moment of the move.
    ino: int = 0
    size: int | None = None
    mtime_ns: int | None = None


_ENTRY_COLUMNS = "src, dst, method, file_id, new_status, sha256, tmp, id, state"


def pending_entries() -> list[Entry]:
    """The journal entries a crash left PENDING, oldest first."""
    cursor = database_proxy.connection().execute(
        f"SELECT {_ENTRY_COLUMNS} FROM move_journal WHERE state = ? ORDER BY id",
        (MoveState.PENDING,),
    )
    return [Entry(*row) for row in cursor]


def insert_entries(entries: list[Entry]) -> None:
    """Insert PENDING entries and number them (writer thread, inside its transaction).

    The ids are taken as MAX(id)+1, … — what SQLite would pick — so one executemany
    does the lot; safe because only the writer thread inserts.
    """
    con = database_proxy.connection()
    check_transitions(con, entries)
    (top,) = con.execute("SELECT COALESCE(MAX(id), 0) FROM move_journal").fetchone()
    now = sql_time(utcnow())
    for number, entry in enumerate(entries, top + 1):
        entry.id = number
    con.executemany(
        f"INSERT INTO move_journal ({_ENTRY_COLUMNS}, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.src, e.dst, e.method, e.file_id, e.new_status, e.sha256, e.tmp)
            + (e.id, e.state, now)
            for e in entries
        ],
    )


def check_transitions(con: sqlite3.Connection, entries: list[Entry]) -> None:
    """Raise IllegalTransition before anything moves if a file may not take its status."""
    wanted = {e.file_id: e.new_status for e in entries if e.file_id and e.new_status}
    ids = list(wanted)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for file_id, old in con.execute(
            f"SELECT id, status FROM files WHERE id IN ({marks})", chunk
        ):
            check_file_transition(old, str(wanted[file_id]))


def update_entry(entry: Entry) -> None:
    """Store a changed destination or method (writer thread)."""
    database_proxy.connection().execute(
        "UPDATE move_journal SET dst = ?, tmp = ?, method = ? WHERE id = ?",
        (entry.dst, entry.tmp, entry.method, entry.id),
    )


def finish_rows(done: list[tuple[Entry, str]]) -> None:
    """Mark journal entries DONE and point their file rows at the new paths."""
    now = sql_time(utcnow())
    con = database_proxy.connection()
    con.executemany(
        "UPDATE move_journal SET dst = ?, state = ?, finished_at = ? WHERE id = ?",
        [(dst, MoveState.DONE, now, e.id) for e, dst in done],
    )
    con.executemany(
        "UPDATE files SET current_path = ?, updated_at = ?, status = COALESCE(?, status),"
        " target_path = CASE WHEN ? = ? THEN ? ELSE target_path END WHERE id = ?",
        [
            (dst, now, e.new_status, e.new_status, FileStatus.SORTED, dst, e.file_id)
            for e, dst in done
            if e.file_id is not None
        ],
    )
    for entry, dst in done:
        entry.dst, entry.state = dst, MoveState.DONE


def close_entry(entry: Entry, state: str, error: str | None) -> None:
    """Mark an entry ABANDONED (source untouched) or FAILED (file row becomes ERROR)."""
    now = sql_time(utcnow())
    con = database_proxy.connection()
    con.execute(
        "UPDATE move_journal SET state = ?, error = ?, finished_at = ? WHERE id = ?",
        (state, error, now, entry.id),
    )
    entry.state = state
    if state == MoveState.FAILED and entry.file_id is not None:
        try:
            set_file_status(con, entry.file_id, FileStatus.ERROR, error=error)
        except IllegalTransition:
            # e.g. a SORTED file set aside on review: it keeps its status, and says why.
            con.execute(
                "UPDATE files SET error = ?, updated_at = ? WHERE id = ?",
                (error, now, entry.file_id),
            )


# the mover ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Folder:
    """A destination folder: its device, and whether this move made it (so it is empty)."""

    device: int
    made: bool

    @classmethod
    def make(cls, folder: str) -> _Folder:
        try:
            made = _mkdir(folder)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(folder), exist_ok=True)
            made = _mkdir(folder)
        return cls(os.stat(folder).st_dev, made)


def _mkdir(folder: str) -> bool:
    """Create `folder`; False if it was there already."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        return False
    return True


def temp_name(dst: str) -> str:
    """A fresh partial-copy name beside `dst`."""
    folder, name = os.path.split(dst)
    return os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(4)}-{name}")


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
            raise MoveError(result.error or "move failed", result.errno)
        return result.dst

    def move_many(self, requests: list[MoveRequest]) -> list[MoveResult]:
        """Move many files with one journal commit before and one after."""
        planned, results, folders = self._plan(requests)
        if not planned:
            return [results[i] for i in range(len(requests))]
        entries = [entry for _, entry in planned]
        reserved = [entry.dst for entry in entries]
        try:
            self.writer.call(lambda: insert_entries(entries), durable=True)
            self.checkpoint("journaled")
            done = self._execute_all(planned, requests, results)
            # The touched folders made durable before the moves are recorded as DONE.
            sync_folders(folders)
            self.writer.call(lambda: finish_rows(done))
            self.checkpoint("finished")
        finally:
            # A clash at link time reserved a further name: release both.
            self._release(reserved + [e.dst for e in entries])
        return [results[i] for i in range(len(requests))]

    # planning ----------------------------------------------------------------------

    def _plan(
        self, requests: list[MoveRequest]
    ) -> tuple[list[tuple[int, Entry]], dict[int, MoveResult], dict[str, int]]:
        """Entries for the movable requests, results for the others, folders touched."""
        planned, results, touched = [], {}, {}
        # Each destination folder is made and stat'ed once.
        folders: dict[str, _Folder] = {}
        hashed = hashed_identity([r.file_id for r in requests if r.file_id])
        for index, request in enumerate(requests):
            src, dst = os.fspath(request.src), os.fspath(request.dst)
            try:
                src_st = regular_file(src)
                src_dev = src_st.st_dev
                folder = os.path.dirname(dst)
                found = folders.get(folder)
                if found is None:
                    found = folders[folder] = _Folder.make(folder)
                link = src_dev == found.device and not self.force_copy
                free = self._reserve(dst, found.made)
                touched[folder] = found.device
                touched[os.path.dirname(src)] = src_dev
                entry = Entry(src, free, "link" if link else "copy", request.file_id)
                entry.new_status, entry.sha256 = request.new_status, request.sha256
                entry.tmp = None if link else temp_name(free)
                entry.ino = src_st.st_ino
                entry.size, entry.mtime_ns = hashed.get(
                    request.file_id or 0, (None, None)
                )
                planned.append((index, entry))
            except (MoveError, OSError) as exc:
                results[index] = MoveResult(request, None, _reason(exc), exc.errno)
        return planned, results, touched

    def _reserve(self, dst: str, fresh: bool = False) -> str:
        """A free name for `dst`; in a `fresh` folder (just made) only ours are taken.

        Skipping the lookup there is safe: link() never overwrites, and a name taken
        meanwhile moves the file on to the next free one.
        """
        with self._lock:
            for name in candidate_names(dst):
                if name not in self._reserved and (fresh or not exists(name)):
                    self._reserved.add(name)
                    return name
        raise AssertionError("unreachable")

    def _release(self, names: list[str]) -> None:
        with self._lock:
            self._reserved.difference_update(names)

    # execution ---------------------------------------------------------------------

    def _execute_all(
        self,
        planned: list[tuple[int, Entry]],
        requests: list[MoveRequest],
        results: dict[int, MoveResult],
    ) -> list[tuple[Entry, str]]:
        done = []
        sources = Folders()
        try:
            for index, entry in planned:
                final = self._execute_one(index, entry, sources, requests, results)
                if final is not None:
                    done.append((entry, final))
        finally:
            sources.close()
        return done

    def _execute_one(
        self,
        index: int,
        entry: Entry,
        sources: Folders,
        requests: list[MoveRequest],
        results: dict[int, MoveResult],
    ) -> str | None:
        """Carry out one planned move; its final destination, or None (result set)."""
        try:
            with self._slot():
                final = self._execute(entry, sources)
        except (MoveError, OSError) as exc:
            settled = self._settle_failure(entry, _reason(exc))
            if settled is None:
                results[index] = MoveResult(
                    requests[index], None, _reason(exc), getattr(exc, "errno", None)
                )
                return None
            final = settled
        results[index] = MoveResult(requests[index], final)
        return final

    def _settle_failure(self, entry: Entry, reason: str) -> str | None:
        """Let the disk say how a failed move ended, as recovery would after a crash."""
        log = logger.bind(event="move", file_id=entry.file_id, status="failed")
        log.warning("move {} -> {} failed: {}", entry.src, entry.dst, reason)
        try:
            state, dst, error = settle(entry)
        except OSError as exc:
            state, dst, error = MoveState.FAILED, entry.dst, f"{reason}; {_reason(exc)}"
        if state == MoveState.DONE:
            return dst
        message = reason if state == MoveState.ABANDONED else (error or reason)
        self.writer.call(lambda: close_entry(entry, state, message))
        return None

    def _slot(self) -> AbstractContextManager[object]:
        return self.fs_slots if self.fs_slots is not None else nullcontext()

    def _execute(self, entry: Entry, sources: Folders) -> str:
        folder_fd, name = sources.locate(entry.src)
        if entry.method == "link":
            try:
                return self._link_move(entry, folder_fd, name)
            except OSError as exc:
                if exc.errno not in NO_LINK:
                    raise
                self._switch_to_copy(entry)
        return self._copy_move(entry, folder_fd, name)

    def _switch_to_copy(self, entry: Entry) -> None:
        entry.method, entry.tmp = "copy", temp_name(entry.dst)
        self.writer.call(lambda: update_entry(entry), durable=True)

    def _link_into_place(
        self, entry: Entry, source: str, source_dir: int | None = None
    ) -> str:
        """Hard-link `source` at the entry's destination, moving on to a free name on a clash."""
        for _ in range(1000):
            try:
                os.link(source, entry.dst, src_dir_fd=source_dir, follow_symlinks=False)
                return entry.dst
            except FileExistsError:
                self._rename_target(entry)
        raise MoveError(f"no free name for {entry.dst}")

    def _rename_target(self, entry: Entry) -> None:
        with self._lock:
            new = next(
                n
                for n in candidate_names(entry.dst)
                if not exists(n) and n not in self._reserved
            )
            self._reserved.add(new)
        entry.dst = new
        self.writer.call(lambda: update_entry(entry), durable=True)

    def _link_move(self, entry: Entry, folder_fd: int, name: str) -> str:
        # link() never opens or follows the source; the file it links is the one
        # checked here, in the real folder, and checked again once linked.
        st = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        _check_identity(entry, st)
        dst = self._link_into_place(entry, name, folder_fd)
        linked = os.lstat(dst)
        if (linked.st_ino, linked.st_dev) != (st.st_ino, st.st_dev):
            os.unlink(dst)  # the name we just made; the source is untouched
            raise MoveError(f"source was replaced during the move: {entry.src}")
        self.checkpoint("linked")
        os.unlink(name, dir_fd=folder_fd)
        self.checkpoint("unlinked")
        return dst

    def _copy_move(self, entry: Entry, folder_fd: int, name: str) -> str:
        src, tmp = entry.src, str(entry.tmp)
        try:
            copied = self._copy_verified(
                (folder_fd, name, entry), tmp, entry.sha256, self.checkpoint
            )
            self.checkpoint("copied")
            dst = self._link_into_place(entry, tmp)
        except BaseException:
            if exists(tmp):
                os.unlink(tmp)
            raise
        self.checkpoint("placed")
        os.unlink(tmp)
        # Across filesystems nothing orders the two journals: make the copy durable
        # before the source goes.
        fsync_dir(os.path.dirname(dst))
        self.checkpoint("tmp_removed")
        now = os.stat(name, dir_fd=folder_fd, follow_symlinks=False)
        if (now.st_ino, now.st_dev) == (copied.st_ino, copied.st_dev):
            os.unlink(name, dir_fd=folder_fd)
        else:  # a new file took the name meanwhile: it is not ours to delete
            logger.bind(event="move", file_id=entry.file_id).warning(
                "{} was replaced after it was copied; the new file stays", src
            )
        self.checkpoint("unlinked")
        return dst

    @staticmethod
    def _copy_verified(
        source: tuple[int, str, Entry],
        tmp: str,
        expected: str | None,
        checkpoint: Checkpoint,
    ) -> os.stat_result:
        folder_fd, name, entry = source
        src = entry.src
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            src_fd = os.open(name, flags, dir_fd=folder_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise MoveError(f"not a regular file: {src}") from None
            raise
        try:
            st = os.fstat(src_fd)
            if not stat.S_ISREG(st.st_mode):
                raise MoveError(f"not a regular file: {src}")
            _check_identity(entry, st, same_inode=False)
            source_hash = _copy_fd(src_fd, tmp, checkpoint)
        finally:
            os.close(src_fd)
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        if os.lstat(tmp).st_size != st.st_size:
            raise MoveError(f"copy of {src} has the wrong size")
        if sha256_of(tmp) != source_hash or (expected and expected != source_hash):
            raise MoveError(f"copy of {src} does not verify (SHA-256 differs)")
        return st


def _check_identity(entry: Entry, st: os.stat_result, same_inode: bool = True) -> None:
    """MoveError unless `st` is the regular file planned (inode) and hashed (size, mtime)."""
    changed = (
        not stat.S_ISREG(st.st_mode)
        or (same_inode and entry.ino and st.st_ino != entry.ino)
        or (entry.size is not None and st.st_size != entry.size)
        or (
            entry.mtime_ns is not None
            and abs(st.st_mtime_ns - entry.mtime_ns) > MTIME_SLACK_NS
        )
    )
    if changed:
        raise MoveError(f"source is not the file that was hashed: {entry.src}")


def _copy_fd(src_fd: int, tmp: str, checkpoint: Checkpoint) -> str:
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
    for entry in pending_entries():
        try:
            state, dst, error = settle(entry)
        except OSError as exc:  # e.g. a source folder swapped for a symlink
            state, dst, error = MoveState.FAILED, entry.dst, _reason(exc)
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
        return f"source cannot be removed ({_reason(exc)}); not moved"
    return None


def _drop_partial(tmp: str, src: str) -> None:
    """Remove our partial copy; only called while the source is still in place."""
    if exists(tmp) and exists(src):
        os.unlink(tmp)
