"""Inbox watcher: announces each regular file in the inbox once it has settled.

The watcher never opens a file; it only lstat()s paths. A file is announced through
``on_ready(path)`` when its size and mtime have not changed for ``settle_seconds``.
Events (inotify, or polling when inotify is unavailable) only tell the watcher where
to look; a start scan and periodic rescans catch anything the events missed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path, PurePath

from loguru import logger
from watchdog.events import (
    FileSystemEvent,
)
from watchdog.observers.api import BaseObserver

from daemon.watcher_observer import ObserverMixin
from daemon.watcher_scan import ScanMixin, _Pending, _Sig, _sig
from pipeline.intake import ignored_parts, regular_file_stat

DEFAULT_IGNORE: tuple[str, ...] = (".*", "*.part", "*.crdownload", "*.tmp", "~*")


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    return "special file"


def _outermost(dirs: set[Path]) -> list[Path]:
    """The folders of `dirs` that are not inside another of them.

    Walking those covers the rest: a folder moved into the inbox brings an event
    for every folder below it.
    """
    return [d for d in dirs if not any(parent in dirs for parent in d.parents)]


class InboxWatcher(ScanMixin, ObserverMixin):
    """Watches ``inbox`` recursively and calls ``on_ready(path)`` for settled files.

    ``on_ready`` runs on the watcher's settle thread; its exceptions are logged and
    the file is offered again at the next full rescan. A path is announced again only
    if its size, mtime or inode changed, or it was deleted and re-created.
    ``is_known(path)`` (optional) lets the caller suppress announcements of files it
    already has, e.g. after a restart; it is asked once per path the watcher has no
    memory of. Thread-safe: ``scan()`` may be called from any thread.
    """

    def __init__(
        self,
        inbox: Path,
        on_ready: Callable[[Path], None],
        *,
        settle_seconds: float = 2.0,
        rescan_interval_seconds: float = 600,
        ignore_patterns: Sequence[str] = DEFAULT_IGNORE,
        clock: Callable[[], float] = time.monotonic,
        is_known: Callable[[Path], bool] | None = None,
        observer_factory: Callable[[], BaseObserver] | None = None,
    ) -> None:
        self._inbox = Path(os.path.abspath(inbox))
        self._on_ready = on_ready
        self._settle = max(0.0, float(settle_seconds))
        self._rescan_interval = max(0.0, float(rescan_interval_seconds))
        self._ignore_patterns = tuple(ignore_patterns)
        self._clock = clock
        self._is_known = is_known
        self._observer_factory = observer_factory
        self._interval = max(0.01, min(self._settle / 4, 0.5))
        self._log = logger.bind(event="watcher", inbox=str(self._inbox))

        self._lock = threading.Lock()
        self._pending: dict[Path, _Pending] = {}
        self._announced: dict[Path, tuple[_Sig, float]] = {}
        self._specials: set[Path] = set()
        self._dirty: set[Path] = set()
        self._scan_dirs: set[Path] = set()
        self._gone_dirs: set[Path] = set()
        self._full_scan_requested = False
        self._watch_limit_warned = False
        self._inbox_was_present = True

        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._state_lock = threading.Lock()
        self._started = False
        self._stopped = False
        self._observer: BaseObserver | None = None
        self._mode = "inotify"
        self._thread = threading.Thread(
            target=self._run, name="inbox-watcher", daemon=True
        )

    # -- public interface -------------------------------------------------------

    @property
    def mode(self) -> str:
        """Either "inotify" (event-based observer) or "polling" (fallback)."""
        return self._mode

    @property
    def pending(self) -> int:
        """Number of files seen but not yet settled."""
        with self._lock:
            return len(self._pending)

    def start(self) -> None:
        """Start the observer and the settle thread, then queue a full scan.

        Raises FileNotFoundError if the inbox is not a directory, RuntimeError if
        called twice or after stop(). An OSError from the inotify observer (watch or
        instance limit) falls back to polling with a warning.
        """
        with self._state_lock:
            if self._started or self._stopped:
                raise RuntimeError("an InboxWatcher can be started only once")
            if not self._inbox.is_dir():
                raise FileNotFoundError(f"inbox is not a directory: {self._inbox}")
            self._observer = self._start_observer()
            self._thread.start()
            self._started = True
        self._log.info(
            "watching inbox ({} mode, settle {} s)", self._mode, self._settle
        )
        self.request_scan()

    def stop(self, timeout: float = 5) -> None:
        """Stop the observer and settle thread; idempotent, bounded by ``timeout``."""
        with self._state_lock:
            if self._stopped or not self._started:
                self._stopped = True
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        self._wake.set()
        observer = self._observer
        if observer is not None:
            with contextlib.suppress(Exception):
                observer.stop()
            with contextlib.suppress(RuntimeError):
                observer.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        self._log.info("inbox watcher stopped")

    def is_alive(self) -> bool:
        """True while both the observer and the settle thread are running."""
        observer = self._observer
        return (
            self._started
            and not self._stopped
            and observer is not None
            and observer.is_alive()
            and self._thread.is_alive()
        )

    def request_scan(self) -> None:
        """Queue a full scan on the settle thread (returns at once)."""
        with self._lock:
            self._full_scan_requested = True
        self._wake.set()

    def _on_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        src = Path(os.fsdecode(event.src_path))
        if kind in ("deleted", "moved"):
            self._note_removed(src, event.is_directory)
        if kind == "moved":
            self._note_arrived(Path(os.fsdecode(event.dest_path)), event.is_directory)
        elif kind in ("created", "modified", "attrib", "closed"):
            if not event.is_directory or kind == "created":
                self._note_arrived(src, event.is_directory)
            if kind == "closed":
                # Only hurries the next observation; the settle rule still applies.
                self._wake.set()

    def _note_arrived(self, path: Path, is_dir: bool) -> None:
        with self._lock:
            (self._scan_dirs if is_dir else self._dirty).add(path)

    def _note_removed(self, path: Path, is_dir: bool) -> None:
        with self._lock:
            if is_dir:
                self._gone_dirs.add(path)
            else:
                # Forget at once so a quick delete + re-create is announced again.
                self._pending.pop(path, None)
                self._announced.pop(path, None)

    # -- settle thread ----------------------------------------------------------

    def _run(self) -> None:
        next_rescan = self._clock() + self._rescan_interval
        while not self._stop_event.is_set():
            try:
                if self._rescan_interval and self._clock() >= next_rescan:
                    next_rescan = self._clock() + self._rescan_interval
                    self.request_scan()
                self._tick()
            except Exception:
                self._log.exception("watcher tick failed; continuing")
            self._wake.wait(self._interval)
            self._wake.clear()

    def _tick(self) -> None:
        with self._lock:
            full, self._full_scan_requested = self._full_scan_requested, False
            dirs, self._scan_dirs = self._scan_dirs, set()
            dirty, self._dirty = self._dirty, set()
            gone, self._gone_dirs = self._gone_dirs, set()
        # Gone folders first: files re-created under them below must not be pruned.
        if gone:
            self._forget_dirs(gone)
        walked: set[Path] = set()  # files a walk below has just looked at
        if full:
            self.scan()
        else:
            for d in _outermost(dirs):
                self._scan_subtree(d, walked)
        # A folder moved in brings an event for each file in it too (watchdog makes
        # them up); the walk of the folder has looked at those files already.
        for path in dirty - walked:
            self._observe(path)
        ready = self._collect_ready()
        for path in ready:
            if self._stop_event.is_set():
                break
            self._announce(path)
        if ready:
            # One line per tick, not per file: a phone dump of thousands of files
            # would otherwise cost more in logging than in hashing.
            self._log.bind(event="intake", status="settled").info(
                "{} files finished arriving and were taken in", len(ready)
            )

    def _collect_ready(self) -> list[Path]:
        now = self._clock()
        ready: list[Path] = []
        with self._lock:
            for path, entry in list(self._pending.items()):
                st = regular_file_stat(path)
                if st is None:
                    del self._pending[path]
                    self._announced.pop(path, None)
                elif _sig(st) != entry.sig:
                    entry.sig = _sig(st)
                    entry.last_change = now
                elif now - entry.last_change >= self._settle:
                    del self._pending[path]
                    self._announced[path] = (entry.sig, now)
                    ready.append(path)
        return ready

    def _announce(self, path: Path) -> None:
        try:
            self._on_ready(path)
        except Exception:
            self._log.bind(path=str(path)).exception(
                "on_ready failed; the file will be offered again at the next rescan"
            )
            with self._lock:
                self._announced.pop(path, None)

    # -- candidates -------------------------------------------------------------

    def _rel(self, path: Path) -> PurePath | None:
        """Path relative to the inbox, or None if outside it or ignored."""
        try:
            rel = path.relative_to(self._inbox)
        except ValueError:
            return None
        if not rel.parts or self._ignored(rel.parts):
            return None
        return rel

    def _ignored(self, parts: Iterable[str]) -> bool:
        return ignored_parts(parts, self._ignore_patterns)

    def _parents_are_dirs(self, rel: PurePath) -> bool:
        """True if no folder between the inbox and ``rel`` is a symlink."""
        current = self._inbox
        for part in rel.parts[:-1]:
            current = current / part
            try:
                if not stat.S_ISDIR(os.lstat(current).st_mode):
                    return False
            except OSError:
                return False
        return True

    def _observe(self, path: Path) -> None:
        """Look at a path an event named: offer it, or forget it if it is gone."""
        rel = self._rel(path)
        if rel is None or not self._parents_are_dirs(rel):
            return
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            with self._lock:
                self._pending.pop(path, None)
                self._announced.pop(path, None)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self._note_special(path, st)
            return
        self._offer(path, st)

    def _offer(self, path: Path, st: os.stat_result) -> bool:
        """Add a regular file to the pending set; True if it is a new candidate."""
        sig, now = _sig(st), self._clock()
        with self._lock:
            entry = self._pending.get(path)
            if entry is not None:
                if entry.sig != sig:
                    entry.sig, entry.last_change = sig, now
                return False
            seen = self._announced.get(path)
            if seen is not None and seen[0] == sig:
                return False
        if seen is None and self._is_known is not None and self._known(path):
            with self._lock:
                self._announced.setdefault(path, (sig, now))
            return False
        with self._lock:
            seen = self._announced.get(path)
            if path in self._pending or (seen is not None and seen[0] == sig):
                return False
            self._pending[path] = _Pending(sig, now)
        return True

    def _known(self, path: Path) -> bool:
        assert self._is_known is not None
        try:
            return bool(self._is_known(path))
        except Exception:
            self._log.bind(path=str(path)).exception("is_known failed; treating as new")
            return False

    def _note_special(self, path: Path, st: os.stat_result) -> None:
        with self._lock:
            if path in self._specials:
                return
            self._specials.add(path)
        self._log.bind(path=str(path)).warning(
            "skipping {} in the inbox (only regular files are taken)",
            _kind(st.st_mode),
        )

    # -- scanning ---------------------------------------------------------------
