"""What a cleanup step is, what the plan saw, and how each step removes its path.

The folders and files the plan saw are kept (`Root`, `SeenDir`, `Partial`); a removal
re-checks that the path is still inside its root and still the file or
folder the plan saw (device, inode, size, mtime); otherwise it raises `Changed` and
leaves it. Never a media or sidecar file, never what Syncthing owns.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.media import MEDIA_EXTS, SIDECAR_EXTS
from pipeline.models import MoveJournal, MoveState, tuples

ACTIONS = (
    "remove_empty_dir",
    "remove_batch_folder",
    "remove_temp",
    "remove_partial",
    "remove_log",
    "delete_jobs",
    "optimize_db",
    "skip",
)


BATCH_FILES = frozenset({"manifest.json", "SHA256SUMS"})


CURRENT_LOG = "media-pipeline.log"  # daemon/logs.py LOG_NAME; pipeline cannot import it


ROTATED_LOG = "media-pipeline.*.log*"


SYNCTHING_NAMES = frozenset({".stfolder", ".stignore", ".stversions"})


USER_EXTS = MEDIA_EXTS | SIDECAR_EXTS


OPTIMIZE_EVERY_SECONDS = 24 * 3600


# Roots whose empty sub-folders go; roots searched for partial copies; the roots a
# misconfigured temp_dir must not overlap. temp_dir is not among the first: the
# daemon makes no folders there, and deletes only its own files (TEMP_PREFIX).
EMPTY_ROOTS = ("inbox", "batch_dir", "sync_dir")


WALKED_ROOTS = (
    "inbox",
    "duplicates_dir",
    "batch_dir",
    "sync_dir",
    "sorted_dir",
    "temp_dir",
)


NOT_TEMP_ROOTS = (
    "inbox",
    "duplicates_dir",
    "batch_dir",
    "sync_dir",
    "sorted_dir",
    "log_dir",
)


@dataclass(frozen=True)
class Action:
    """One thing cleanup did (or, in a dry run, would do); a `skip` says why not."""

    action: str
    path: str
    reason: str


def syncthing_owned(name: str) -> bool:
    """True for the names Syncthing keeps in its folders; cleanup leaves them alone."""
    if name in SYNCTHING_NAMES:
        return True
    temp = name.startswith((".syncthing.", "~syncthing~"))
    return temp and name.endswith(".tmp")


def is_user_file(name: str) -> bool:
    """True for a media or sidecar extension: cleanup never deletes such a file."""
    return os.path.splitext(name)[1].lower() in USER_EXTS


class Changed(Exception):
    """A path is no longer what the plan saw; it is left alone."""


@dataclass
class Step:
    action: Action
    apply: Callable[[], None] | None = None


def reason_of(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _inside(path: Path, root_real: Path) -> None:
    """Raise Changed unless `path`'s folder still resolves inside `root_real`."""
    parent = Path(os.path.realpath(path.parent))
    if parent != root_real and not parent.is_relative_to(root_real):
        raise Changed(f"no longer inside {root_real}")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    # The inode alone is not enough: ext4 hands a freed inode to the next new file,
    # so a file deleted and re-created at the same name can carry the old number.
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def unlink_checked(path: Path, seen: os.stat_result, root_real: Path) -> None:
    _inside(path, root_real)
    now = os.lstat(path)
    if not stat.S_ISREG(now.st_mode) or _identity(now) != _identity(seen):
        raise Changed("replaced since it was checked; left in place")
    os.unlink(path)


def rmdir_checked(path: Path, ino: int, root_real: Path) -> None:
    _inside(path, root_real)
    now = os.lstat(path)
    if not stat.S_ISDIR(now.st_mode) or now.st_ino != ino:
        raise Changed("replaced since it was checked; left in place")
    os.rmdir(path)  # fails, leaving it, when something arrived in the meantime


def batch_contents(folder: Path) -> tuple[list[Path], list[Path], list[str]]:
    """(manifest files, folders bottom-up ending with `folder`, anything else)."""
    files: list[Path] = []
    dirs: list[Path] = []
    extra: list[str] = []

    def visit(path: Path, top: bool) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not syncthing_owned(entry.name):
                visit(Path(entry.path), False)
            elif (
                top
                and entry.name in BATCH_FILES
                and entry.is_file(follow_symlinks=False)
            ):
                files.append(Path(entry.path))
            else:
                extra.append(os.path.relpath(entry.path, folder))
        dirs.append(path)

    visit(folder, True)
    return files, dirs, extra


def remove_batch_folder(folder: Path, root_real: Path) -> None:
    _inside(folder, root_real)
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise Changed("no longer a folder; left in place")
    files, dirs, extra = batch_contents(folder)
    if extra:
        raise Changed(f"now holds {extra[0]}; left in place")
    for path in files:
        os.unlink(path)
    for path in dirs:
        os.rmdir(path)


@dataclass
class SeenDir:
    path: Path
    ino: int
    mtime: float
    subdirs: list[SeenDir] = field(default_factory=list)
    kept: bool = False  # holds something that stays: a file, a link, Syncthing's


@dataclass
class Root:
    names: list[str]
    path: Path
    real: Path
    st: os.stat_result
    temp_rule: bool = False
    node: SeenDir | None = None

    @property
    def empty_rule(self) -> bool:
        return any(name in EMPTY_ROOTS for name in self.names)


@dataclass
class Partial:
    root: Root
    node: SeenDir
    path: Path
    st: os.stat_result


def database_files(path: Path) -> set[str]:
    """The database file and its companions (WAL, shared memory, rollback journal)."""
    db = os.path.realpath(path)
    return {db + suffix for suffix in ("", "-wal", "-shm", "-journal")}


def journal_holds() -> dict[str, str]:
    """Partial names held by a PENDING (in flight) or FAILED (maybe sole copy) move.

    Read after the walk: a move journals its temp name before creating the file,
    so every partial the walk saw that is still in use shows up here.
    """
    held: dict[str, str] = {}
    rows = MoveJournal.select(MoveJournal.tmp, MoveJournal.state).where(
        MoveJournal.tmp.is_null(False),
        MoveJournal.state.in_((MoveState.PENDING, MoveState.FAILED)),
    )
    for tmp, state in tuples(rows):
        name = Path(tmp).name
        if held.get(name) != MoveState.PENDING:
            held[name] = state
    return held
