"""Status writes for `files` and `batches`, each checked against pipeline/states.py.

Every function runs on the writer thread and takes its connection explicitly
(`writer.call(lambda: store.set_file_status(db_conn(), …))`). Raw SQL: these run per
file on hot paths, where peewee's query building costs more than SQLite.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from pipeline.models import database_proxy, sql_time, utcnow
from pipeline.states import (
    BATCH_TRANSITIONS,
    FILE_TRANSITIONS,
    BatchStatus,
    FileStatus,
    check_batch_transition,
    check_file_transition,
)

# Columns a caller may set along with a status (never user input: names are fixed).
FILE_COLUMNS = frozenset(
    {
        "error",
        "error_stage",
        "next_retry_at",
        "attempts",
        "batch",
        "size",
        "mtime_ns",
        "sha256",
        "phash",
        "duplicate_of",
        "near_duplicate_of",
        "near_distance",
        "current_path",
        "target_path",
    }
)
BATCH_COLUMNS = frozenset(
    {
        "error_stage",
        "last_error",
        "file_count",
        "size_bytes",
        "location",
        "progress",
        "bytes_needed",
        "synced_at",
        "sorted_at",
    }
)


def db_conn() -> sqlite3.Connection:
    """The calling thread's connection (the writer's, when called on the writer)."""
    return database_proxy.connection()


def _value(value: Any) -> Any:
    return sql_time(value) if isinstance(value, datetime) else value


def _update(
    conn: sqlite3.Connection,
    table: str,
    allowed: frozenset[str],
    row_id: int,
    columns: dict[str, Any],
) -> None:
    unknown = set(columns) - allowed - {"status"}
    if unknown:
        raise ValueError(f"not a {table} column for a status write: {sorted(unknown)}")
    columns = {**columns, "updated_at": utcnow()}
    sets = ", ".join(f"{name} = ?" for name in columns)
    values = [_value(v) for v in columns.values()]
    conn.execute(f"UPDATE {table} SET {sets} WHERE id = ?", (*values, row_id))


STATUS_OF_FILE = "SELECT status FROM files WHERE id = ?"


def file_status(conn: sqlite3.Connection, file_id: int) -> str | None:
    row = conn.execute(STATUS_OF_FILE, (file_id,)).fetchone()
    return row[0] if row else None


def set_file_status(
    conn: sqlite3.Connection, file_id: int, new: FileStatus, **columns: Any
) -> str | None:
    """Move a file to `new` (and set `columns`); returns its old status, None if gone.

    Raises IllegalTransition (nothing written) for an edge the table does not allow.
    """
    old = file_status(conn, file_id)
    if old is None:
        return None
    check_file_transition(old, new)
    _update(conn, "files", FILE_COLUMNS, file_id, {"status": new, **columns})
    return old


def move_files(
    conn: sqlite3.Connection,
    old: FileStatus,
    new: FileStatus,
    where: str,
    params: tuple[Any, ...],
    **columns: Any,
) -> int:
    """Every file in `old` matching `where` becomes `new`; returns how many."""
    check_file_transition(old, new)
    unknown = set(columns) - FILE_COLUMNS
    if unknown:
        raise ValueError(f"not a files column for a status write: {sorted(unknown)}")
    values = {"status": new, **columns, "updated_at": utcnow()}
    sets = ", ".join(f"{name} = ?" for name in values)
    cursor = conn.execute(
        f"UPDATE files SET {sets} WHERE status = ? AND ({where})",
        (*(_value(v) for v in values.values()), old, *params),
    )
    return cursor.rowcount


def batch_status(conn: sqlite3.Connection, batch_id: int) -> str | None:
    row = conn.execute(
        "SELECT status FROM batches WHERE id = ?", (batch_id,)
    ).fetchone()
    return row[0] if row else None


def set_batch_status(
    conn: sqlite3.Connection, batch_id: int, new: BatchStatus, **columns: Any
) -> str | None:
    """Move a batch to `new` (and set `columns`); returns its old status, None if gone.

    Raises IllegalTransition (nothing written) for an edge the table does not allow.
    """
    old = batch_status(conn, batch_id)
    if old is None:
        return None
    check_batch_transition(old, new)
    _update(conn, "batches", BATCH_COLUMNS, batch_id, {"status": new, **columns})
    return old


# The strict check: the same table enforced by SQLite itself, for raw SQL anywhere.
# Installed per connection (TEMP objects) where `strict` is asked for: the test suite
# sets MEDIA_PIPELINE_STRICT_STATES=1, so any illegal write there raises
# sqlite3.IntegrityError. In production the checks above stop an illegal change
# before anything moves; a status that must record a move already done is written.


def install_strict_checks(conn: sqlite3.Connection) -> None:
    """TEMP tables of the allowed edges and triggers that reject any other change."""
    for table, edges, kind in (
        ("files", FILE_TRANSITIONS, "file"),
        ("batches", BATCH_TRANSITIONS, "batch"),
    ):
        exists = conn.execute(
            "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = ?",
            (table,),
        ).fetchone()
        if not exists:
            continue
        edge_table = f"mp_{kind}_edges"
        conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {edge_table}"
            " (old TEXT, new TEXT, PRIMARY KEY (old, new)) WITHOUT ROWID"
        )
        conn.execute(f"DELETE FROM temp.{edge_table}")
        pairs = [(o, n) for o, targets in edges.items() for n in targets]
        pairs += [(s, s) for s in edges]
        conn.executemany(f"INSERT INTO temp.{edge_table} VALUES (?, ?)", pairs)
        conn.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS mp_{kind}_status_update"
            f" BEFORE UPDATE OF status ON main.{table} WHEN NOT EXISTS"
            f" (SELECT 1 FROM temp.{edge_table} e"
            "  WHERE e.old = OLD.status AND e.new = NEW.status)"
            f" BEGIN SELECT RAISE(ABORT, 'IllegalTransition: {kind} status change"
            " not allowed by pipeline/states.py'); END"
        )
        conn.execute(
            f"CREATE TEMP TRIGGER IF NOT EXISTS mp_{kind}_status_insert"
            f" BEFORE INSERT ON main.{table} WHEN NOT EXISTS"
            f" (SELECT 1 FROM temp.{edge_table} e WHERE e.old = NEW.status)"
            f" BEGIN SELECT RAISE(ABORT, 'IllegalTransition: unknown {kind} status');"
            " END"
        )
