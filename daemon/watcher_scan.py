"""The inbox watcher's walks: a full scan, a new subtree, and forgetting what left.

A mixin of `InboxWatcher` (daemon/watcher.py), whose state and locks it uses; kept
apart so the watcher's event and settle logic reads on its own.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.intake import regular_file_stat

_Sig = tuple[int, int, int]  # size, mtime_ns, inode: any difference = a new version


@dataclass(slots=True)
class _Pending:
    sig: _Sig
    last_change: float


def _sig(st: os.stat_result) -> _Sig:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


class ScanMixin:
    """Walking the inbox; every path is lstat()ed, nothing is opened or followed."""

    # Provided by InboxWatcher.
    _inbox: Path
    _lock: Any
    _announced: dict[Path, tuple[_Sig, float]]
    _specials: set[Path]
    _inbox_was_present: bool
    _stop_event: Any
    _log: Any
    _clock: Any

    def scan(self) -> int:
        """Walk the whole inbox now; return how many new candidates were added.

        Never follows symlinks, skips ignored paths and special files, and forgets
        announced files that are no longer in the inbox.
        """
        if not self._inbox_present():
            return 0
        started = self._clock()
        seen: set[Path] = set()
        specials: set[Path] = set()
        new, dirs, complete = self._walk(self._inbox, seen, specials)
        if complete:
            self._prune_after_scan(seen, specials, started)
            self._check_watch_limit(dirs)
        return new

    def _scan_subtree(self, top: Path, seen: set[Path]) -> None:
        """Offer every regular file below `top`, adding each to `seen`."""
        rel = self._rel(top)
        if rel is None or not self._parents_are_dirs(rel):
            return
        try:
            if not stat.S_ISDIR(os.lstat(top).st_mode):
                return
        except OSError:
            return
        self._walk(top, seen, None)

    def _walk(
        self, top: Path, seen: set[Path] | None, specials: set[Path] | None
    ) -> tuple[int, int, bool]:
        """Offer every regular file below ``top``; (new, folders, completed)."""
        new, dirs, stack = 0, 0, [top]
        while stack:
            if self._stop_event.is_set():
                return new, dirs, False
            folder = stack.pop()
            dirs += 1
            for entry in self._entries(folder):
                if self._ignored((entry.name,)):
                    continue
                path = Path(entry.path)
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(path)
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    if specials is not None:
                        specials.add(path)
                    self._note_special(path, st)
                    continue
                if seen is not None:
                    seen.add(path)
                new += self._offer(path, st)
        return new, dirs, True

    def _entries(self, folder: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(folder) as it:
                return list(it)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._log.bind(path=str(folder)).warning("cannot list folder: {}", exc)
            return []

    def _inbox_present(self) -> bool:
        present = self._inbox.is_dir()
        if present != self._inbox_was_present:
            self._inbox_was_present = present
            if present:
                self._log.info("inbox is back")
            else:
                self._log.error("inbox is missing; nothing is taken until it is back")
        return present

    def _prune_after_scan(
        self, seen: set[Path], specials: set[Path], started: float
    ) -> None:
        # Entries announced after the walk began may simply not have been reached.
        with self._lock:
            stale = [
                p
                for p, (_, at) in self._announced.items()
                if at < started and p not in seen
            ]
            for path in stale:
                del self._announced[path]
            self._specials &= specials

    def _forget_dirs(self, gone: set[Path]) -> None:
        """Drop memory of files below removed folders that are no longer there."""
        with self._lock:
            candidates = [
                (p, sig)
                for p, (sig, _) in self._announced.items()
                if any(parent in gone for parent in p.parents)
            ]
        for path, sig in candidates:
            st = regular_file_stat(path)
            if st is None or _sig(st) != sig:
                with self._lock:
                    if self._announced.get(path, (None,))[0] == sig:
                        del self._announced[path]
