"""SQLite access: opening in WAL mode, versioned migrations and the single writer.

Reads may happen on any thread (peewee keeps one connection per thread). Every write
goes through `Writer` (pipeline/writer.py, re-exported here), whose one thread groups
queued operations into a transaction; a caller of `Writer.call` returns only after
its write is committed.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

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
from pipeline.writer import Writer as Writer  # re-exported: the one writer

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
