"""The `move_journal` rows: written before a move, closed after it (writer thread)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from pipeline.models import FileStatus, MoveState, database_proxy, sql_time, utcnow
from pipeline.states import IllegalTransition, check_file_transition
from pipeline.store import set_file_status


def hashed_identity(file_ids: list[int]) -> dict[int, tuple[int | None, int | None]]:
    """(size, mtime_ns) recorded when each file was hashed, by id."""
    found: dict[int, tuple[int | None, int | None]] = {}
    if not file_ids:
        return found
    con = database_proxy.connection()
    for start in range(0, len(file_ids), 500):
        chunk = file_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for file_id, size, mtime_ns in con.execute(
            f"SELECT id, size, mtime_ns FROM files WHERE id IN ({marks})", chunk
        ):
            found[file_id] = (size, mtime_ns)
    return found


@dataclass(slots=True)
class Entry:
    """One `move_journal` row as the mover and recovery work with it."""

    src: str
    dst: str
    method: str
    file_id: int | None = None
    new_status: str | None = None
    sha256: str | None = None
    tmp: str | None = None
    id: int = 0
    state: str = MoveState.PENDING
    # Not journaled: what the source was when planned (inode) and hashed (size,
    # mtime), re-checked at the moment of the move.
    ino: int = 0
    size: int | None = None
    mtime_ns: int | None = None


_ENTRY_COLUMNS = "src, dst, method, file_id, new_status, sha256, tmp, id, state"


def pending_entries() -> list[Entry]:
    """The journal entries a crash left PENDING, oldest first."""
    cursor = database_proxy.connection().execute(
        f"SELECT {_ENTRY_COLUMNS} FROM move_journal WHERE state = ? ORDER BY id",
        (MoveState.PENDING,),
    )
    return [Entry(*row) for row in cursor]


def insert_entries(entries: list[Entry]) -> None:
    """Insert PENDING entries and number them (writer thread, inside its transaction).

    The ids are taken as MAX(id)+1, … — what SQLite would pick — so one executemany
    does the lot; safe because only the writer thread inserts.
    """
    con = database_proxy.connection()
    check_transitions(con, entries)
    (top,) = con.execute("SELECT COALESCE(MAX(id), 0) FROM move_journal").fetchone()
    now = sql_time(utcnow())
    for number, entry in enumerate(entries, top + 1):
        entry.id = number
    con.executemany(
        f"INSERT INTO move_journal ({_ENTRY_COLUMNS}, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (e.src, e.dst, e.method, e.file_id, e.new_status, e.sha256, e.tmp)
            + (e.id, e.state, now)
            for e in entries
        ],
    )


def check_transitions(con: sqlite3.Connection, entries: list[Entry]) -> None:
    """Raise IllegalTransition before anything moves if a file may not take its status."""
    wanted = {e.file_id: e.new_status for e in entries if e.file_id and e.new_status}
    ids = list(wanted)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        for file_id, old in con.execute(
            f"SELECT id, status FROM files WHERE id IN ({marks})", chunk
        ):
            check_file_transition(old, str(wanted[file_id]))


def update_entry(entry: Entry) -> None:
    """Store a changed destination or method (writer thread)."""
    database_proxy.connection().execute(
        "UPDATE move_journal SET dst = ?, tmp = ?, method = ? WHERE id = ?",
        (entry.dst, entry.tmp, entry.method, entry.id),
    )


def finish_rows(done: list[tuple[Entry, str]]) -> None:
    """Mark journal entries DONE and point their file rows at the new paths."""
    now = sql_time(utcnow())
    con = database_proxy.connection()
    con.executemany(
        "UPDATE move_journal SET dst = ?, state = ?, finished_at = ? WHERE id = ?",
        [(dst, MoveState.DONE, now, e.id) for e, dst in done],
    )
    con.executemany(
        "UPDATE files SET current_path = ?, updated_at = ?, status = COALESCE(?, status),"
        " target_path = CASE WHEN ? = ? THEN ? ELSE target_path END WHERE id = ?",
        [
            (dst, now, e.new_status, e.new_status, FileStatus.SORTED, dst, e.file_id)
            for e, dst in done
            if e.file_id is not None
        ],
    )
    for entry, dst in done:
        entry.dst, entry.state = dst, MoveState.DONE


def close_entry(entry: Entry, state: str, error: str | None) -> None:
    """Mark an entry ABANDONED (source untouched) or FAILED (file row becomes ERROR)."""
    now = sql_time(utcnow())
    con = database_proxy.connection()
    con.execute(
        "UPDATE move_journal SET state = ?, error = ?, finished_at = ? WHERE id = ?",
        (state, error, now, entry.id),
    )
    entry.state = state
    if state == MoveState.FAILED and entry.file_id is not None:
        try:
            set_file_status(con, entry.file_id, FileStatus.ERROR, error=error)
        except IllegalTransition:
            # e.g. a SORTED file set aside on review: it keeps its status, and says why.
            con.execute(
                "UPDATE files SET error = ?, updated_at = ? WHERE id = ?",
                (error, now, entry.file_id),
            )
