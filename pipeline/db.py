"""SQLite access: opening in WAL mode, versioned migrations and the single writer.

Reads may happen on any thread (peewee keeps one connection per thread). Every write
goes through `Writer`, whose one thread groups queued operations into a transaction;
a caller of `Writer.call` returns only after its write is committed.
"""

from __future__ import annotations

import errno
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from loguru import logger
from peewee import SqliteDatabase

from pipeline import stats
from pipeline.models import (
    ALL_MODELS,
    LibraryRoot,
    SchemaVersion,
    VerifyRun,
    database_proxy,
    utcnow,
)
from pipeline.store import install_strict_checks

T = TypeVar("T")
_STOP = object()


STRICT_ENV = "MEDIA_PIPELINE_STRICT_STATES"


class PipelineDatabase(SqliteDatabase):
    """SQLite with, when `strict_states` is set, the transition table as triggers.

    The triggers are TEMP objects, made on every new connection (peewee opens one
    per thread), so the database file itself never depends on them.
    """

    strict_states = False

    def _add_conn_hooks(self, conn: sqlite3.Connection) -> None:
        # A private peewee hook (run on every new connection) its stubs leave out.
        super()._add_conn_hooks(conn)  # type: ignore[misc]
        if self.strict_states:
            install_strict_checks(conn)


def open_database(
    path: Path, busy_timeout_ms: int = 10_000, strict_states: bool | None = None
) -> SqliteDatabase:
    """Open (creating) the database at `path`, bind the models and migrate it.

    `strict_states` (default: $MEDIA_PIPELINE_STRICT_STATES is 1, as in the test
    suite) makes SQLite reject any status change pipeline/states.py does not allow.
    """
    db = PipelineDatabase(
        str(path),
        pragmas={
            "journal_mode": "wal",
            "synchronous": "full",
            "busy_timeout": busy_timeout_ms,
            "foreign_keys": 1,
            "cache_size": -16_000,
        },
        timeout=busy_timeout_ms / 1000,
        check_same_thread=False,
    )
    database_proxy.initialize(db)
    db.connect(reuse_if_open=True)
    migrate(db)
    if strict_states is None:
        strict_states = os.environ.get(STRICT_ENV) == "1"
    if strict_states:
        # After the migrations, which repair old rows with edges of their own.
        db.strict_states = True
        install_strict_checks(db.connection())
    return db


def column_names(db: SqliteDatabase, table: str) -> set[str]:
    """Column names of `table` as SQLite reports them."""
    return {col.name for col in db.get_columns(table)}


def add_column(db: SqliteDatabase, table: str, column: str, decl: str) -> bool:
    """ALTER TABLE ADD COLUMN unless it exists; returns True when it was added."""
    if column in column_names(db, table):
        return False
    db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {decl}')
    return True


def _v1_tables(db: SqliteDatabase) -> None:
    db.create_tables(ALL_MODELS, safe=True)


def _v2_indexes(db: SqliteDatabase) -> None:
    # The exact-duplicate lookup only ever asks among accepted rows. Not UNIQUE:
    # sidecars are accepted even when identical to another sidecar.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS files_accepted_sha256 ON files(sha256) "
        "WHERE status IN ('UNIQUE','BATCHED','SYNCED','SORTED')"
    )
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS files_batch_status ON files(batch, status)"
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS files_phash ON files(phash)")


def _v3_batch_columns(db: SqliteDatabase) -> None:
    # Databases made before these columns existed get them without data loss.
    add_column(db, "batches", "bytes_needed", "INTEGER")
    add_column(db, "batches", "location", "TEXT")


def _v4_drop_accepted_sha256(db: SqliteDatabase) -> None:
    # files_sha256 answers the exact-duplicate lookup as well (a hash has one or two
    # rows), while this partial index had to be rewritten on every status change of
    # every file: it cost more than a third of the sort's database time.
    db.execute_sql("DROP INDEX IF EXISTS files_accepted_sha256")


# Stages a failed file's `error` names before its message (`stage: message`).
_STAGES = ("register", "hash", "dedup", "batch", "sync", "sort")
# Messages of failures that may pass, as strerror writes them (see failures.py).
_TRANSIENT = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM)


def _v5_retry(db: SqliteDatabase) -> None:
    # Status names are spelled out: a migration keeps doing what it did when written.
    # Failed files learn their stage and, for a failure that may pass, are retried
    # soon after the upgrade; batches that were marked SORTED while some of their
    # files failed to sort are opened again, so retried files can finish them.
    add_column(db, "files", "error_stage", "VARCHAR(255)")
    add_column(db, "files", "next_retry_at", "DATETIME")
    add_column(db, "batches", "error_stage", "VARCHAR(255)")
    for stage in _STAGES:
        db.execute_sql(
            "UPDATE files SET error_stage = ? WHERE status = 'ERROR'"
            " AND error_stage IS NULL AND error LIKE ?",
            (stage, f"{stage}:%"),
        )
    now = utcnow().isoformat(" ")
    for code in _TRANSIENT:
        db.execute_sql(
            "UPDATE files SET next_retry_at = ? WHERE status = 'ERROR'"
            " AND error_stage IS NOT NULL AND error LIKE ?",
            (now, f"%{os.strerror(code)}%"),
        )
    if "synced_at" in column_names(db, "batches"):
        db.execute_sql(
            "UPDATE batches SET status = CASE WHEN synced_at IS NULL THEN 'CREATED'"
            " ELSE 'SYNCED' END, sorted_at = NULL WHERE status = 'SORTED' AND EXISTS"
            " (SELECT 1 FROM files f WHERE f.batch = batches.id AND f.status = 'ERROR'"
            " AND f.error_stage = 'sort')"
        )
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS files_next_retry_at ON files(next_retry_at)"
        " WHERE next_retry_at IS NOT NULL"
    )


def _v6_stats(db: SqliteDatabase) -> None:
    # Trigger-kept counters (pipeline/stats.py): status pages stop counting the table.
    stats.install(db)
    stats.rebuild(db)


def _v7_adopt_verify(db: SqliteDatabase) -> None:
    # Rows made before adoption existed all came through the inbox.
    add_column(db, "files", "source", "VARCHAR(255) DEFAULT 'inbox'")
    db.create_tables([LibraryRoot, VerifyRun], safe=True)


def _v8_near_review(db: SqliteDatabase) -> None:
    # The review page lists flagged files by the file they resemble; a partial index
    # holds only the (few) flagged rows, so status changes of the others cost nothing.
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS files_near_duplicate_of ON files(near_duplicate_of, id)"
        " WHERE near_duplicate_of IS NOT NULL"
    )
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS near_keeps (low INTEGER NOT NULL,"
        " high INTEGER NOT NULL, at DATETIME NOT NULL, PRIMARY KEY (low, high))"
    )
    db.execute_sql("CREATE INDEX IF NOT EXISTS near_keeps_high ON near_keeps(high)")
    _flatten_near_chains(db)


def _flatten_near_chains(db: SqliteDatabase) -> None:
    """Point an image flagged after a flagged one at the first, so groups are disjoint."""
    for _ in range(64):  # each pass shortens every chain by one link
        rows = db.execute_sql(
            "SELECT c.id, c.phash, a.near_duplicate_of, r.phash FROM files c"
            " JOIN files a ON c.near_duplicate_of = a.id"
            " LEFT JOIN files r ON r.id = a.near_duplicate_of"
            " WHERE a.near_duplicate_of IS NOT NULL"
        ).fetchall()
        if not rows:
            return
        for file_id, phash, root, root_phash in rows:
            distance = (
                ((phash ^ root_phash) & ((1 << 64) - 1)).bit_count()
                if phash is not None and root_phash is not None
                else None
            )
            db.execute_sql(
                "UPDATE files SET near_duplicate_of = ?, near_distance = ? WHERE id = ?",
                (root, distance, file_id),
            )


def _v9_drop_unread_indexes(db: SqliteDatabase) -> None:
    # Every new image paid a random-leaf insert into each of these, and no query reads
    # them: near-duplicates are found in memory (the index loads with a table scan),
    # and files_batch_status (batch, status) answers every lookup by batch.
    db.execute_sql("DROP INDEX IF EXISTS files_phash")
    db.execute_sql("DROP INDEX IF EXISTS files_batch")


MIGRATIONS: list[tuple[int, Callable[[SqliteDatabase], None]]] = [
    (1, _v1_tables),
    (2, _v2_indexes),
    (3, _v3_batch_columns),
    (4, _v4_drop_accepted_sha256),
    (5, _v5_retry),
    (6, _v6_stats),
    (7, _v7_adopt_verify),
    (8, _v8_near_review),
    (9, _v9_drop_unread_indexes),
]


def schema_version(db: SqliteDatabase) -> int:
    """Highest applied migration, 0 for an empty database."""
    if not db.table_exists("schema_version"):
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def migrate(db: SqliteDatabase) -> list[int]:
    """Apply pending migrations in order, each in its own transaction; idempotent."""
    db.create_tables([SchemaVersion], safe=True)
    # By set, not by the highest number: versions are assigned to tracks that land
    # in any order, so a database may hold 7 before 5 exists.
    done = {row.version for row in SchemaVersion.select(SchemaVersion.version)}
    applied = []
    for version, step in MIGRATIONS:
        if version in done:
            continue
        with db.atomic():
            step(db)
            SchemaVersion.insert(version=version).on_conflict_ignore().execute()
        applied.append(version)
        logger.bind(event="migrate").info("database migrated to version {}", version)
    return applied


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
