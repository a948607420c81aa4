"""The inbox watcher's event source: inotify through watchdog, polling as fallback.

A mixin of `InboxWatcher` (daemon/watcher.py), whose settings and log it uses.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver, PollingObserverVFS

# Opened/closed-no-write events are pure noise for us: reading a file changes nothing.
_EVENT_FILTER: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]


def _max_user_watches() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_watches").read_text().strip())
    except (OSError, ValueError):
        return None


class _Handler(FileSystemEventHandler):
    """Forwards every watchdog event to the watcher; runs on the observer thread."""

    def __init__(self, watcher: Any) -> None:
        super().__init__()
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher._on_event(event)


class ObserverMixin:
    """Starting the observer, and warning when the inbox outgrows inotify's watches."""

    # Provided by InboxWatcher.
    _inbox: Path
    _settle: float
    _rescan_interval: float
    _observer_factory: Callable[[], BaseObserver] | None
    _mode: str
    _watch_limit_warned: bool
    _log: Any

    def _start_observer(self) -> BaseObserver:
        handler = _Handler(self)
        observer: BaseObserver | None = None
        try:
            observer = (self._observer_factory or Observer)()
            self._schedule_and_start(observer, handler)
        except OSError as exc:
            if observer is not None:
                with contextlib.suppress(Exception):
                    observer.stop()
            return self._start_polling(handler, exc)
        polling = isinstance(observer, PollingObserver | PollingObserverVFS)
        self._mode = "polling" if polling else "inotify"
        return observer

    def _start_polling(self, handler: _Handler, exc: OSError) -> BaseObserver:
        interval = max(1.0, self._settle)
        self._log.bind(errno=exc.errno).warning(
            "inotify unavailable ({}); falling back to polling the inbox every {} s",
            exc,
            interval,
        )
        # lstat so that the snapshot never descends through a symlinked folder.
        observer = PollingObserverVFS(os.lstat, os.scandir, polling_interval=interval)
        self._schedule_and_start(observer, handler)
        self._mode = "polling"
        return observer

    def _schedule_and_start(self, observer: BaseObserver, handler: _Handler) -> None:
        observer.schedule(
            handler, str(self._inbox), recursive=True, event_filter=_EVENT_FILTER
        )
        observer.start()

    def _check_watch_limit(self, dirs: int) -> None:
        if self._mode != "inotify" or self._watch_limit_warned:
            return
        limit = _max_user_watches()
        if limit is not None and dirs >= limit:
            self._watch_limit_warned = True
            self._log.bind(errno=errno.ENOSPC).warning(
                "inbox has {} folders, fs.inotify.max_user_watches is {}: events in "
                "some folders are missed and only rescans (every {} s) find them",
                dirs,
                limit,
                self._rescan_interval,
            )
