"""Names, plain file checks, destination folders and the source's real folder."""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEMP_PREFIX = ".mp-partial-"


CHUNK = 1 << 20


StrPath = str | os.PathLike[str]


class MoveError(Exception):
    """A move that could not be done; the source is untouched.

    `errno` is the OSError's when one caused it (see pipeline/failures.py).
    """

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno


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


@dataclass(frozen=True, slots=True)
class DestFolder:
    """A destination folder: its device, and whether this move made it (so it is empty)."""

    device: int
    made: bool

    @classmethod
    def make(cls, folder: str) -> DestFolder:
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


def os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)
