"""Counters kept by SQLite triggers, so that no status page counts the whole table.

Table `stats(kind, key, n, bytes)`:

- `file_status` / STATUS: files and their bytes in each status (keyed by the status
  string, so a status added later is counted without a change here);
- `file_source` / SOURCE: files by `capture_source` (only rows that have one); the
  `mtime` row is the number an owner should watch: dates guessed from mtime;
- `file_flag` / `hashed` (sha256 known), `near_duplicate` (flagged for review);
- `batch_status` / STATUS: batches and their `size_bytes` in each status.

Triggers on `files` and `batches` update these rows inside the transaction of the
write that changes them, whichever module writes and even from the sqlite3 shell,
so a crash can never leave them out of step. They can still drift if someone edits
the database with the triggers dropped: `check` compares them with a `GROUP BY`
(the daemon runs it in the background after start) and `rebuild` recounts.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from loguru import logger

FILE_STATUS = "file_status"
FILE_SOURCE = "file_source"
FILE_FLAG = "file_flag"
BATCH_STATUS = "batch_status"
HASHED = "hashed"
NEAR = "near_duplicate"

TABLE = (
    "CREATE TABLE IF NOT EXISTS stats (kind TEXT NOT NULL, key TEXT NOT NULL,"
    " n INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,"
    " PRIMARY KEY (kind, key)) WITHOUT ROWID"
)


def _bump(kind: str, key: str, n: str, size: str = "0", when: str = "1") -> str:
    """One trigger statement: add `n` and `size` to the (kind, key) row."""
    return (
        f"INSERT INTO stats (kind, key, n, bytes) SELECT '{kind}', {key}, {n}, {size}"
        f" WHERE {when} ON CONFLICT (kind, key) DO UPDATE"
        " SET n = n + excluded.n, bytes = bytes + excluded.bytes;"
    )


def _file_rows(row: str, sign: str) -> list[str]:
    """Statements adding (sign '+') or removing ('-') one files row from every count."""
    return [
        _bump(FILE_STATUS, f"{row}.status", f"{sign}1", f"{sign}COALESCE({row}.size, 0)"),
        _bump(FILE_SOURCE, f"{row}.capture_source", f"{sign}1",
              when=f"{row}.capture_source IS NOT NULL"),
        _bump(FILE_FLAG, f"'{HASHED}'", f"{sign}1", when=f"{row}.sha256 IS NOT NULL"),
        _bump(FILE_FLAG, f"'{NEAR}'", f"{sign}1",
              when=f"{row}.near_duplicate_of IS NOT NULL"),
    ]  # fmt: skip


def _batch_rows(row: str, sign: str) -> list[str]:
    return [
        _bump(
            BATCH_STATUS,
            f"{row}.status",
            f"{sign}1",
            f"{sign}COALESCE({row}.size_bytes, 0)",
        )
    ]


def _trigger(name: str, event: str, table: str, body: list[str], when: str = "") -> str:
    cond = f" WHEN {when}" if when else ""
    return (
        f"CREATE TRIGGER IF NOT EXISTS {name} AFTER {event} ON {table}{cond} BEGIN "
        + " ".join(body)
        + " END"
    )


# An UPDATE fires only the triggers whose columns it names, and each trigger only
# when its value really changed: most writes (paths, timestamps) touch no counter.
TRIGGERS: dict[str, str] = {
    "stats_files_insert": _trigger(
        "stats_files_insert", "INSERT", "files", _file_rows("NEW", "+")
    ),
    "stats_files_delete": _trigger(
        "stats_files_delete", "DELETE", "files", _file_rows("OLD", "-")
    ),
    "stats_files_status": _trigger(
        "stats_files_status",
        "UPDATE OF status, size",
        "files",
        _file_rows("OLD", "-")[:1] + _file_rows("NEW", "+")[:1],
        "OLD.status IS NOT NEW.status OR OLD.size IS NOT NEW.size",
    ),
    "stats_files_source": _trigger(
        "stats_files_source",
        "UPDATE OF capture_source",
        "files",
        _file_rows("OLD", "-")[1:2] + _file_rows("NEW", "+")[1:2],
        "OLD.capture_source IS NOT NEW.capture_source",
    ),
    "stats_files_hashed": _trigger(
        "stats_files_hashed",
        "UPDATE OF sha256",
        "files",
        _file_rows("OLD", "-")[2:3] + _file_rows("NEW", "+")[2:3],
        "(OLD.sha256 IS NULL) != (NEW.sha256 IS NULL)",
    ),
    "stats_files_near": _trigger(
        "stats_files_near",
        "UPDATE OF near_duplicate_of",
        "files",
        _file_rows("OLD", "-")[3:] + _file_rows("NEW", "+")[3:],
        "(OLD.near_duplicate_of IS NULL) != (NEW.near_duplicate_of IS NULL)",
    ),
    "stats_batches_insert": _trigger(
        "stats_batches_insert", "INSERT", "batches", _batch_rows("NEW", "+")
    ),
    "stats_batches_delete": _trigger(
        "stats_batches_delete", "DELETE", "batches", _batch_rows("OLD", "-")
    ),
    "stats_batches_status": _trigger(
        "stats_batches_status",
        "UPDATE OF status, size_bytes",
        "batches",
        _batch_rows("OLD", "-") + _batch_rows("NEW", "+"),
        "OLD.status IS NOT NEW.status OR OLD.size_bytes IS NOT NEW.size_bytes",
    ),
}

# The same numbers counted from the tables: what the triggers must always equal.
RECOUNT = [
    f"SELECT '{FILE_STATUS}', status, COUNT(*), COALESCE(SUM(size), 0) FROM files"
    " GROUP BY status",
    f"SELECT '{FILE_SOURCE}', capture_source, COUNT(*), 0 FROM files"
    " WHERE capture_source IS NOT NULL GROUP BY capture_source",
    f"SELECT '{FILE_FLAG}', '{HASHED}', COUNT(*), 0 FROM files"
    " WHERE sha256 IS NOT NULL",
    f"SELECT '{FILE_FLAG}', '{NEAR}', COUNT(*), 0 FROM files"
    " WHERE near_duplicate_of IS NOT NULL",
    f"SELECT '{BATCH_STATUS}', status, COUNT(*), COALESCE(SUM(size_bytes), 0)"
    " FROM batches GROUP BY status",
]

Counts = dict[tuple[str, str], tuple[int, int]]


def install(con: sqlite3.Connection | Any) -> list[str]:
    """Create the table and any missing trigger; returns the triggers it created.

    `con` is a sqlite3 connection or a peewee database (anything with execute_sql
    or execute). Run inside the writer's transaction.
    """
    run = getattr(con, "execute_sql", None) or con.execute
    run(TABLE)
    present = {row[0] for row in run(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'stats_%'"
    )}  # fmt: skip
    created = []
    for name, sql in TRIGGERS.items():
        if name not in present:
            run(sql)
            created.append(name)
    return created


def _nonzero(rows: Any) -> Counts:
    out: Counts = {}
    for kind, key, n, size in rows:
        if n or size:
            k = (kind, "" if key is None else str(key))
            old = out.get(k, (0, 0))
            out[k] = (old[0] + int(n), old[1] + int(size))
    return out


def stored(con: Any) -> Counts:
    """What the counters say (rows that are all zero left out)."""
    run = getattr(con, "execute_sql", None) or con.execute
    return _nonzero(run("SELECT kind, key, n, bytes FROM stats"))


def recount(con: Any) -> Counts:
    """The same numbers from `GROUP BY` over the tables (reads every row)."""
    run = getattr(con, "execute_sql", None) or con.execute
    rows: list[Any] = []
    for sql in RECOUNT:
        rows.extend(run(sql))
    return _nonzero(rows)


def differences(con: Any) -> list[str]:
    """`kind/key: stored (n, bytes), counted (n, bytes)` for every counter that is off.

    Both sides are read in one transaction when the caller opens one (the daemon
    does), so a concurrent write cannot show up as a difference.
    """
    have, want = stored(con), recount(con)
    return [
        f"{kind}/{key}: stored {have.get((kind, key), (0, 0))},"
        f" counted {want.get((kind, key), (0, 0))}"
        for kind, key in sorted(set(have) | set(want))
        if have.get((kind, key), (0, 0)) != want.get((kind, key), (0, 0))
    ]


def rebuild(con: Any) -> None:
    """Recount every counter from the tables; run by the writer, in its transaction."""
    run = getattr(con, "execute_sql", None) or con.execute
    run("DELETE FROM stats")
    for sql in RECOUNT:
        run(
            f"INSERT INTO stats (kind, key, n, bytes) SELECT * FROM ({sql})"
            " WHERE 1 ON CONFLICT (kind, key) DO UPDATE"
            " SET n = n + excluded.n, bytes = bytes + excluded.bytes"
        )


def check_and_repair(db: Any, writer: Any) -> list[str]:
    """Compare the counters with the tables; rebuild them (with a warning) when off.

    `db` is the peewee database (read on the calling thread, in one read
    transaction), `writer` the single writer. Also recreates a dropped trigger.
    Returns the differences found (empty when all was well).
    """
    missing = writer.call(lambda: install(db))
    with db.atomic():  # one snapshot for both sides (WAL: does not block the writer)
        diff = differences(db)
    if missing:
        diff = [f"trigger {name} was missing" for name in missing] + diff
    if diff:
        logger.bind(event="stats", status="rebuilt").warning(
            "status counters did not match the tables; recounted ({})",
            "; ".join(diff[:10]),
        )
        writer.call(lambda: rebuild(db))
    return diff


@dataclass
class Snapshot:
    """All counters at one moment; `get` answers 0 for a key never seen."""

    counts: Counts = field(default_factory=dict)

    def n(self, kind: str, key: str) -> int:
        return self.counts.get((kind, key), (0, 0))[0]

    def bytes(self, kind: str, key: str) -> int:
        return self.counts.get((kind, key), (0, 0))[1]

    def keys(self, kind: str) -> list[str]:
        return [k for kd, k in self.counts if kd == kind]

    def by(self, kind: str, keys: tuple[str, ...] = ()) -> dict[str, int]:
        """Counts of `kind`: every key of `keys` (0 when none), then any other seen."""
        out = {k: self.n(kind, k) for k in keys}
        for key in sorted(self.keys(kind)):
            if key not in out:
                out[key] = self.n(kind, key)
        return out


def snapshot(con: Any) -> Snapshot:
    """Read every counter (a few dozen rows, whatever the size of the library)."""
    return Snapshot(stored(con))
