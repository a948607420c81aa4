"""The mover: journaled, never-overwriting moves by hard link or verified copy."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from pipeline.db import Writer
from pipeline.fsops.durability import fsync_dir, sync_folders
from pipeline.fsops.journal import (
    Entry,
    close_entry,
    finish_rows,
    hashed_identity,
    insert_entries,
    update_entry,
)
from pipeline.fsops.paths import (
    CHUNK,
    MTIME_SLACK_NS,
    DestFolder,
    Folders,
    MoveError,
    StrPath,
    candidate_names,
    exists,
    os_reason,
    regular_file,
    sha256_of,
    temp_name,
)
from pipeline.fsops.recovery import settle
from pipeline.models import MoveState

# errnos meaning "this filesystem cannot hard-link here": fall back to copying.
NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


Checkpoint = Callable[[str], None]


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

    def move_many(
        self, requests: list[MoveRequest], on_each: Callable[[], None] | None = None
    ) -> list[MoveResult]:
        """Move many files with one journal commit before and one after.

        `on_each()` is called before each file is moved (a stage's stall clock).
        """
        planned, results, folders = self._plan(requests)
        if not planned:
            return [results[i] for i in range(len(requests))]
        entries = [entry for _, entry in planned]
        reserved = [entry.dst for entry in entries]
        try:
            self.writer.call(lambda: insert_entries(entries), durable=True)
            self.checkpoint("journaled")
            done = self._execute_all(planned, requests, results, on_each)
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
        folders: dict[str, DestFolder] = {}
        hashed = hashed_identity([r.file_id for r in requests if r.file_id])
        for index, request in enumerate(requests):
            src, dst = os.fspath(request.src), os.fspath(request.dst)
            try:
                src_st = regular_file(src)
                src_dev = src_st.st_dev
                folder = os.path.dirname(dst)
                found = folders.get(folder)
                if found is None:
                    found = folders[folder] = DestFolder.make(folder)
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
                results[index] = MoveResult(request, None, os_reason(exc), exc.errno)
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
        on_each: Callable[[], None] | None,
    ) -> list[tuple[Entry, str]]:
        done = []
        sources = Folders()
        try:
            for index, entry in planned:
                if on_each is not None:
                    on_each()
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
            settled = self._settle_failure(entry, os_reason(exc))
            if settled is None:
                results[index] = MoveResult(
                    requests[index], None, os_reason(exc), getattr(exc, "errno", None)
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
            state, dst, error = (
                MoveState.FAILED,
                entry.dst,
                f"{reason}; {os_reason(exc)}",
            )
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
