"""Migrations are versioned and idempotent; the writer groups and isolates operations."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from pipeline import db as dbmod
from pipeline.models import File, database_proxy
from tests.conftest import wait_until


def dump(path: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(path)
    try:
        return sorted(
            con.execute("SELECT name, sql FROM sqlite_master WHERE sql NOT NULL")
        )
    finally:
        con.close()


def test_migrations_run_twice_without_change(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = dbmod.open_database(path)
    File.create(original_path="/a", rel_path="a", current_path="/a")
    schema = dump(path)
    assert dbmod.migrate(db) == []
    db.close()
    db = dbmod.open_database(path)
    assert dbmod.schema_version(db) == dbmod.MIGRATIONS[-1][0]
    assert dump(path) == schema
    assert File.select().count() == 1
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


def test_add_column_twice_is_a_noop_and_keeps_data(tmp_path: Path) -> None:
    db = dbmod.open_database(tmp_path / "db.sqlite")
    File.create(original_path="/a", rel_path="a", current_path="/a")
    assert dbmod.add_column(db, "files", "note", "TEXT") is True
    assert dbmod.add_column(db, "files", "note", "TEXT") is False
    assert "note" in dbmod.column_names(db, "files")
    assert File.select().count() == 1
    db.close()


def test_old_database_gets_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = dbmod.open_database(path)
    db.execute_sql(
        "CREATE TABLE tmp AS SELECT id, name, status, size_bytes FROM batches"
    )
    db.execute_sql("DROP TABLE batches")
    db.execute_sql("ALTER TABLE tmp RENAME TO batches")
    db.execute_sql("DELETE FROM schema_version WHERE version >= 3")
    db.close()
    db = dbmod.open_database(path)
    assert {"bytes_needed", "location"} <= dbmod.column_names(db, "batches")
    db.close()


def test_indexes_exist(tmp_path: Path) -> None:
    db = dbmod.open_database(tmp_path / "db.sqlite")
    sql = " ".join(s for _, s in dump(tmp_path / "db.sqlite"))
    for column in ("sha256", "status", "batch"):
        assert f'("{column}")' in sql or f"({column}" in sql, column
    db.close()


def test_writer_commits_before_returning_and_isolates_failures(tmp_path: Path) -> None:
    db = dbmod.open_database(tmp_path / "db.sqlite")
    writer = dbmod.Writer(db)
    ids: list[int] = []

    def add(n: int) -> None:
        ids.append(
            writer.call(
                lambda: File.create(
                    original_path=f"/{n}", rel_path="x", current_path="/x"
                ).id
            )
        )

    threads = [threading.Thread(target=add, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    with pytest.raises(ZeroDivisionError):
        writer.call(
            lambda: (
                File.create(original_path="/bad", rel_path="x", current_path="/x"),
                1 / 0,
            )
        )
    for t in threads:
        t.join()
    # A second connection sees every committed row and none of the failed one.
    con = sqlite3.connect(tmp_path / "db.sqlite")
    paths = {row[0] for row in con.execute("SELECT original_path FROM files")}
    con.close()
    assert paths == {f"/{n}" for n in range(20)}
    assert len(set(ids)) == 20
    assert writer.call(lambda: writer.call(lambda: 42)) == 42  # nested call runs inline
    writer.close()
    assert not writer.is_alive()
    with pytest.raises(RuntimeError):
        writer.call(lambda: None)
    database_proxy.initialize(None)


def test_durable_writes_commit_with_full_sync(tmp_path: Path) -> None:
    db = dbmod.open_database(tmp_path / "db.sqlite")
    writer = dbmod.Writer(db)
    level = lambda: db.execute_sql("PRAGMA synchronous").fetchone()[0]  # noqa: E731
    assert writer.call(level, durable=True) == 2  # FULL: fsync at every commit
    assert (
        writer.call(level) == 1
    )  # NORMAL: safe against a crash, redone after power loss
    assert writer.call(level, durable=True) == 2
    writer.close()
    database_proxy.initialize(None)


def test_version_4_drops_the_partial_hash_index(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = dbmod.open_database(path)
    db.execute_sql(
        "CREATE INDEX files_accepted_sha256 ON files(sha256) "
        "WHERE status IN ('UNIQUE','BATCHED','SYNCED','SORTED')"
    )
    db.execute_sql("DELETE FROM schema_version WHERE version >= 4")
    db.close()
    db = dbmod.open_database(path)
    assert "files_accepted_sha256" not in " ".join(n for n, _ in dump(path))
    plan = db.execute_sql(
        "EXPLAIN QUERY PLAN SELECT id FROM files WHERE sha256 = ? AND id != ?"
        " AND status IN ('UNIQUE','BATCHED','SYNCED','SORTED') LIMIT 1",
        ("0" * 64, 1),
    ).fetchall()
    assert "USING INDEX files_sha256" in str(plan)
    db.close()
    database_proxy.initialize(None)


def rows_in_main_file(path: Path, copy: Path) -> int:
    """Rows of `files` in the database file alone, as if its WAL were lost."""
    copy.write_bytes(path.read_bytes())
    con = sqlite3.connect(copy)
    try:
        return con.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    finally:
        con.close()


def test_idle_writer_checkpoints_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = dbmod.open_database(path)
    db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema into the file
    writer = dbmod.Writer(db, idle_checkpoint=1.5)
    copy = tmp_path / "copy.sqlite"
    try:
        writer.call(
            lambda: File.create(original_path="/a", rel_path="a", current_path="/a")
        )
        # Just committed: in the WAL, not yet in the database file.
        assert rows_in_main_file(path, copy) == 0
        assert wait_until(lambda: rows_in_main_file(path, copy) == 1, timeout=10)
    finally:
        writer.close()
        database_proxy.initialize(None)


def test_version_7_adds_source_and_library_tables(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = dbmod.open_database(path)
    db.execute_sql(
        "CREATE TABLE tmp AS SELECT id, original_path, rel_path, current_path, status,"
        " attempts, created_at, updated_at FROM files"
    )
    db.execute_sql("DROP TABLE files")
    db.execute_sql("ALTER TABLE tmp RENAME TO files")
    db.execute_sql(
        "INSERT INTO files (original_path, rel_path, current_path, status, attempts)"
        " VALUES ('/a', 'a', '/a', 'SORTED', 0)"
    )
    db.execute_sql("DROP TABLE library_roots")
    db.execute_sql("DROP TABLE verify_runs")
    db.execute_sql("DELETE FROM schema_version WHERE version = 7")
    db.close()
    db = dbmod.open_database(path)
    assert "source" in dbmod.column_names(db, "files")
    assert db.execute_sql("SELECT source FROM files").fetchall() == [("inbox",)]
    assert {"library_roots", "verify_runs"} <= set(db.get_tables())
    db.close()
    database_proxy.initialize(None)


def test_a_lower_version_landing_later_still_runs(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = dbmod.open_database(path)
    db.execute_sql("DROP INDEX files_batch_status")
    db.execute_sql("DELETE FROM schema_version WHERE version = 2")
    db.close()
    db = dbmod.open_database(path)
    assert "files_batch_status" in {n for n, _ in dump(path)}
    db.close()
    database_proxy.initialize(None)


def test_lookups_by_batch_use_an_index_after_the_unread_ones_go(tmp_path: Path) -> None:
    db = dbmod.open_database(tmp_path / "db.sqlite")
    names = {
        r[0]
        for r in db.execute_sql("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert not names & {"files_phash", "files_batch"}
    for sql in (
        "SELECT id FROM files WHERE batch = ?",
        "SELECT count(*) FROM files WHERE batch = ? AND status = 'SORTED'",
    ):
        plan = str(db.execute_sql("EXPLAIN QUERY PLAN " + sql, (1,)).fetchall())
        assert "USING COVERING INDEX files_batch_status" in plan or (
            "USING INDEX files_batch_status" in plan
        ), sql
    db.close()
    database_proxy.initialize(None)
