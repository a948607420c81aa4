"""The one thread that writes to SQLite (see `Writer`)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from loguru import logger
from peewee import SqliteDatabase

T = TypeVar("T")
_STOP = object()


class Writer:
    """The one thread that writes to SQLite, grouping queued work into transactions.

    `call(fn)` runs `fn()` on the writer thread inside a transaction and returns its
    result after the commit. Each operation runs in its own savepoint, so a failing
    one raises to its caller without undoing the others in the group.

    Commits are safe against a killed process either way (WAL). `durable=True` also
    makes the commit survive a power cut (synchronous=FULL, an fsync per commit): the
    move journal asks for it before a file moves. Other writes are redone after a
    power cut, so they commit without the fsync. A call made from the writer thread
    itself runs inline, inside the caller's transaction and its durability.

    After `idle_checkpoint` seconds without work it checkpoints the WAL, so that
    SQLite's automatic checkpoint (a commit that crosses 1,000 WAL pages copies them
    into the database and fsyncs it) seldom lands inside a caller's commit.
    """

    def __init__(
        self,
        db: SqliteDatabase,
        max_group: int = 200,
        name: str = "db-writer",
        idle_checkpoint: float = 0.5,
    ):
        self.db = db
        self.max_group = max_group
        self.idle_checkpoint = idle_checkpoint
        self._dirty = False  # written since the last checkpoint
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._closed = False
        self._level = "full"  # what open_database's pragmas set on every connection
        self._thread.start()

    def submit(self, fn: Callable[[], T], durable: bool = False) -> Future[T]:
        """Queue `fn` for the writer thread; the future resolves after the commit."""
        future: Future[T] = Future()
        if threading.current_thread() is self._thread:
            future.set_result(fn())
            return future
        if self._closed:
            raise RuntimeError("database writer is closed")
        self._queue.put((fn, future, durable))
        return future

    def call(
        self, fn: Callable[[], T], timeout: float | None = 60, durable: bool = False
    ) -> T:
        """Run `fn` on the writer thread and wait until it is committed."""
        return self.submit(fn, durable).result(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout: float = 10) -> None:
        """Finish queued work, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _take_group(
        self,
    ) -> tuple[list[tuple[Callable[[], Any], Future[Any], bool]], bool]:
        first = self._next()
        if first is _STOP:
            return [], True
        group, stop = [first], False
        while len(group) < self.max_group:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                stop = True
                break
            group.append(item)
        return group, stop

    def _next(self) -> Any:
        """The next queued item, checkpointing the WAL first if the queue stays idle."""
        if self._dirty:
            try:
                return self._queue.get(timeout=self.idle_checkpoint)
            except queue.Empty:
                self._checkpoint()
        return self._queue.get()

    def _checkpoint(self) -> None:
        self._dirty = False
        try:
            self.db.execute_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except Exception:  # noqa: BLE001 - a busy or failed checkpoint is retried later
            logger.bind(event="db_write").opt(exception=True).debug("checkpoint failed")

    def _loop(self) -> None:
        while True:
            group, stop = self._take_group()
            if group:
                self._run_group(group)
                self._dirty = True
            if stop:
                self.db.close()
                return

    def _run_group(
        self, group: list[tuple[Callable[[], Any], Future[Any], bool]]
    ) -> None:
        outcomes: list[tuple[Future[Any], bool, Any]] = []
        started = time.monotonic()
        try:
            self._synchronous("full" if any(d for _, _, d in group) else "normal")
            with self.db.atomic():
                if len(group) == 1:
                    # Alone in its transaction: a failure rolls the transaction back
                    # (raised out of atomic), so no savepoint is needed.
                    outcomes.append((group[0][1], True, group[0][0]()))
                else:
                    for fn, future, _ in group:
                        outcomes.append((future, *self._run_one(fn)))
        except Exception as exc:  # a lone operation or the commit failed
            if len(group) > 1:
                logger.bind(event="db_write").exception("transaction failed")
            for _, future, _ in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, ok, value in outcomes:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        elapsed = (time.monotonic() - started) * 1000
        if elapsed > 1000:
            logger.bind(event="db_write", duration_ms=round(elapsed)).warning(
                "slow write group of {} operations", len(group)
            )

    def _synchronous(self, level: str) -> None:
        """Set SQLite's commit durability for the next transaction (only if it changes)."""
        if self._level != level:
            self.db.execute_sql(f"PRAGMA synchronous = {level}")
            self._level = level

    def _run_one(self, fn: Callable[[], Any]) -> tuple[bool, Any]:
        try:
            with self.db.atomic():
                return True, fn()
        except Exception as exc:
            return False, exc
