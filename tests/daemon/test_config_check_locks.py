"""The config check never breaks SQLite's locks on the running database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from daemon.config_checks import database_problems

READER = "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('SELECT count(*) FROM sqlite_master').fetchall(); c.close()"


def _live_database(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t (x INTEGER)")
    conn.execute("INSERT INTO t VALUES (1)")
    return conn


def test_checking_the_live_database_keeps_its_wal_for_other_processes(tmp_path):
    db = tmp_path / "db.sqlite"
    conn = _live_database(db)
    assert database_problems(db) == []
    # Another process opens and closes the database: with our locks intact it must
    # not think it is the last user and delete the WAL under us.
    subprocess.run([sys.executable, "-c", READER, str(db)], check=True)
    assert Path(f"{db}-wal").exists()
    conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
    conn.close()


def test_a_file_that_is_not_a_database_is_still_refused(tmp_path):
    db = tmp_path / "db.sqlite"
    db.write_bytes(b"not a database at all, just some text " * 10)
    (problem,) = database_problems(db)
    assert problem.startswith(
        "database.path: is an existing file that is not an SQLite"
    )


def test_an_empty_file_or_a_folder(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert database_problems(empty) == []
    (problem,) = database_problems(tmp_path)
    assert "is a folder" in problem
