"""Library roots: which folder may be adopted, and the roots on record.

`sorted_dir` (or a folder inside it) is a library root; a folder outside every
configured one is a read-only reference root; anything else is refused
(`AdoptRefused`): a system folder, a path through a symlink, a folder inside (or
around) another configured folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.context import Roots
from pipeline.models import LibraryRoot, RootKind, RootState

# Folders that are never a photo library: adopting them would read the system.
SYSTEM_PATHS = frozenset(
    {"/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root"}
    | {"/run", "/sbin", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/home"}
)


class AdoptRefused(ValueError):
    """A path that cannot be adopted; the message says why (shown to the caller)."""


@dataclass(frozen=True)
class Target:
    """A folder to adopt: its real path and whether it is `library` or `reference`."""

    path: Path
    kind: str


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve_target(roots: Roots, path: str | os.PathLike[str] | None) -> Target:
    """Check a folder may be adopted; raises AdoptRefused with the reason.

    Default `sorted_dir`. Inside `sorted_dir`: a library root. Inside (or around)
    any other configured folder: refused — the inbox is for the pipeline. Elsewhere:
    a read-only reference root, unless it is a system folder.
    """
    given = Path(path) if path else roots.sorted_dir
    if not given.is_absolute():
        raise AdoptRefused(f"{given}: must be an absolute path")
    normal = os.path.normpath(given)
    real = os.path.realpath(normal)
    if real != normal:
        raise AdoptRefused(f"{given}: must not be or pass through a symlink")
    if not os.path.isdir(real):
        raise AdoptRefused(f"{given}: is not an existing folder")
    if real in SYSTEM_PATHS or real == os.path.realpath(Path.home()):
        raise AdoptRefused(f"{given}: is a system folder")
    sorted_dir = os.path.realpath(roots.sorted_dir)
    if _within(real, sorted_dir):
        return Target(Path(real), RootKind.LIBRARY)
    for name in Roots.__dataclass_fields__:
        folder = os.path.realpath(getattr(roots, name))
        if _within(real, folder):
            raise AdoptRefused(
                f"{given}: is inside paths.{name}; only sorted_dir or a folder "
                "outside the configured ones can be adopted"
            )
        if _within(folder, real):
            raise AdoptRefused(f"{given}: contains paths.{name} ({folder})")
    return Target(Path(real), RootKind.REFERENCE)


def reference_roots() -> list[str]:
    """Paths of the read-only reference roots (never touched by cleanup or moves)."""
    query = LibraryRoot.select(LibraryRoot.path).where(
        LibraryRoot.kind == RootKind.REFERENCE
    )
    return [row.path for row in query]


def is_read_only(path: str | os.PathLike[str]) -> bool:
    """True when `path` lies in a reference root: the daemon must not move or write it."""
    real = os.path.realpath(path)
    return any(_within(real, root) for root in reference_roots())


def interrupted() -> list[str]:
    """Roots whose adoption a stop or crash interrupted (to resume at start)."""
    query = LibraryRoot.select(LibraryRoot.path).where(
        LibraryRoot.state == RootState.ADOPTING
    )
    return [row.path for row in query.order_by(LibraryRoot.id)]
