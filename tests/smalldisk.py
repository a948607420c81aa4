"""A folder on a real, small filesystem for tests that fill a disk.

A tmpfs of SMALL bytes mounted for the test (root may mount); `grow()` remounts it
LARGE. Where mounting is not permitted, ENOSPC is injected at the fsops copy layer
over the same budget instead.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline import fsops
from pipeline.context import Context

KB = 1024
SMALL = "1m"  # fits 3 of the 300 KB files
LARGE = "8m"


class SmallDisk:
    """A folder on a filesystem of SMALL bytes that `grow()` enlarges to LARGE."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch):
        self.path = path
        self.mounted = _mount(path)
        self._budget = [int(SMALL[:-1]) * KB * KB]
        if not self.mounted:
            self._inject(monkeypatch)

    def grow(self) -> None:
        if self.mounted:
            subprocess.run(
                ["mount", "-o", f"remount,size={LARGE}", str(self.path)], check=True
            )
        else:
            self._budget[0] = int(LARGE[:-1]) * KB * KB

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)

    def wants_copy(self, ctx: Context) -> None:
        """Without a real mount every move would be a link: take the copy path."""
        if not self.mounted:
            ctx.mover.force_copy = True

    def _inject(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = fsops.mover._copy_fd
        root = str(self.path)

        def limited(src_fd: int, tmp: str, checkpoint: Any) -> str:
            if not tmp.startswith(root):
                return real(src_fd, tmp, checkpoint)
            used = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
            size = os.fstat(src_fd).st_size
            if used + size > self._budget[0]:
                Path(tmp).write_bytes(b"\0" * max(0, self._budget[0] - used))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
            return real(src_fd, tmp, checkpoint)

        monkeypatch.setattr(fsops.mover, "_copy_fd", limited)


def _mount(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SMALL},mode=0755", "tmpfs", str(path)],
        capture_output=True,
    )
    return done.returncode == 0
