"""The trigger-kept counters equal a GROUP BY after every kind of change, crashes included."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from pipeline import batch as batches
from pipeline import sort, stats
from pipeline.db import Writer, open_database
from pipeline.models import Batch, File, database_proxy
from pipeline.states import FILE_TRANSITIONS
from tests.conftest import wait_until
from tests.pipeline import mediafixtures as mf


def group_by(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """The counts straight from the tables, on a connection of its own."""
    con = sqlite3.connect(path)
    try:
        return stats.recount(con)
    finally:
        con.close()


def assert_in_step(path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    con = sqlite3.connect(path)
    try:
        have, want = stats.stored(con), stats.recount(con)
    finally:
        con.close()
    assert have == want
    return have


@pytest.fixture
def db(tmp_path: Path) -> Any:
    database = open_database(tmp_path / "db.sqlite")
    yield database
    database.close()
    database_proxy.initialize(None)


def new_file(name: str, status: str = "NEW", size: int | None = 10, **kw: Any) -> int:
    return File.create(
        original_path=f"/in/{name}",
        rel_path=name,
        current_path=f"/in/{name}",
        size=size,
        status=status,
        **kw,
    ).id


def test_every_transition_between_statuses(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    edges = [(a, b) for a, targets in FILE_TRANSITIONS.items() for b in targets]
    assert {b for _, b in edges} >= {"SKIPPED", "MISSING", "CORRUPT"}
    ids = {edge: new_file(f"{edge[0]}-{edge[1]}", edge[0], size=7) for edge in edges}
    assert_in_step(path)
    for (_, b), file_id in ids.items():
        File.update(status=b).where(File.id == file_id).execute()
        assert_in_step(path)
    counts = assert_in_step(path)
    into_missing = sum(1 for _, b in edges if b == "MISSING")
    assert counts[(stats.FILE_STATUS, "MISSING")] == (into_missing, 7 * into_missing)
    # A write that keeps the status (paths, timestamps) changes nothing.
    File.update(current_path="/elsewhere", updated_at=datetime(2020, 1, 1)).execute()
    assert assert_in_step(path) == counts


def test_size_source_hash_and_flag_changes_and_deletes(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    a = new_file("a", "UNIQUE", size=None)
    b = new_file("b", "UNIQUE", size=5, sha256="x" * 64, capture_source="exif")
    new_file("c", "SORTED", size=7, capture_source="mtime", near_duplicate_of=b)
    assert_in_step(path)
    File.update(size=100, sha256="y" * 64).where(File.id == a).execute()
    File.update(capture_source="mtime").where(File.id == b).execute()
    File.update(near_duplicate_of=a).where(File.id == b).execute()
    File.update(near_duplicate_of=b).where(File.id == a).execute()  # stays flagged
    counts = assert_in_step(path)
    assert counts[(stats.FILE_SOURCE, "mtime")] == (2, 0)
    assert counts[(stats.FILE_FLAG, stats.NEAR)] == (3, 0)
    assert counts[(stats.FILE_FLAG, stats.HASHED)] == (2, 0)
    File.update(sha256=None, near_duplicate_of=None, capture_source=None).where(
        File.id == b
    ).execute()
    assert_in_step(path)
    File.delete().where(File.id == a).execute()
    assert_in_step(path)
    File.delete().execute()
    assert stats.stored(db) == {}


def test_batches_insert_change_and_delete(db: Any, tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    one = Batch.create(name="b1", status="BUILDING")
    Batch.create(name="b2", size_bytes=20)
    assert_in_step(path)
    for status in ("CREATED", "SYNCING", "ERROR", "SYNCED", "SORTED"):
        Batch.update(status=status, size_bytes=len(status)).where(
            Batch.id == one.id
        ).execute()
        assert assert_in_step(path)[(stats.BATCH_STATUS, status)][1] >= len(status)
    Batch.delete().where(Batch.id == one.id).execute()
    assert assert_in_step(path) == {(stats.BATCH_STATUS, "CREATED"): (1, 20)}


def test_a_rolled_back_write_leaves_the_counters_as_they_were(
    db: Any, tmp_path: Path
) -> None:
    writer = Writer(db)
    try:
        writer.call(lambda: new_file("a", "UNIQUE"))
        before = assert_in_step(tmp_path / "db.sqlite")

        def fails() -> None:
            File.update(status="BATCHED").execute()  # a legal edge
            new_file("b")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            writer.call(fails)
        assert assert_in_step(tmp_path / "db.sqlite") == before
    finally:
        writer.close()


def test_the_real_pipeline_keeps_them_in_step(service: Any) -> None:
    svc = service()
    inbox = svc.ctx.roots.inbox
    mf.make_jpeg(inbox / "a.jpg", datetime(2023, 4, 12, 10, 30), seed=1)
    mf.make_plain(inbox / "b.jpg", mf.jpeg_bytes(seed=2))  # no date: mtime
    (inbox / "copy.jpg").write_bytes((inbox / "a.jpg").read_bytes())
    db_path = Path(svc.settings.database.path)
    svc.submit(inbox / "a.jpg")
    svc.submit(inbox / "b.jpg")
    wait_until(lambda: File.select().where(File.status == "UNIQUE").count() == 2)
    svc.submit(inbox / "copy.jpg")
    wait_until(lambda: File.select().where(File.status == "DUPLICATE").count() == 1)
    assert_in_step(db_path)
    made = batches.create_batch(svc.ctx)
    assert made is not None
    assert assert_in_step(db_path)[(stats.FILE_STATUS, "BATCHED")][0] == 2
    sort.sort_batch(svc.ctx, Batch.get_by_id(made.id))
    counts = assert_in_step(db_path)
    assert counts[(stats.FILE_STATUS, "SORTED")][0] == 2
    assert counts[(stats.FILE_SOURCE, "mtime")] == (1, 0)
    assert counts[(stats.BATCH_STATUS, "SORTED")][0] == 1


WRITER_CHILD = textwrap.dedent("""
    import sys, itertools
    from pathlib import Path
    from pipeline.db import open_database
    from pipeline.models import File
    db = open_database(Path(sys.argv[1]))
    statuses = ["NEW", "HASHED", "UNIQUE", "BATCHED", "SYNCED", "SORTED", "MISSING"]
    for n in itertools.count():
        with db.atomic():
            f = File.create(original_path=f"/x{n}", rel_path=f"x{n}",
                            current_path=f"/x{n}", size=n)
            for s in statuses[: n % len(statuses) + 1]:
                File.update(status=s, size=n + 1).where(File.id == f.id).execute()
            if n % 5 == 0:
                File.delete().where(File.id == f.id - 3).execute()
        if n == 50:
            print("running", flush=True)
    """)


def test_kill_9_in_the_middle_of_writes_leaves_them_in_step(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    open_database(path).close()
    database_proxy.initialize(None)
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER_CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "running\n"
        wait_until(lambda: sum(n for n, _ in group_by(path).values()) > 200)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    counts = assert_in_step(path)
    assert counts[(stats.FILE_STATUS, "MISSING")][0] > 0


def test_check_repairs_a_database_edited_without_the_triggers(
    db: Any, tmp_path: Path
) -> None:
    path = tmp_path / "db.sqlite"
    writer = Writer(db)
    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        writer.call(lambda: [new_file(f"f{i}", "SORTED") for i in range(5)])
        assert stats.check_and_repair(db, writer) == []
        # Behind the daemon's back: triggers dropped, rows changed, one re-made.
        con = sqlite3.connect(path)
        con.execute("DROP TRIGGER stats_files_status")
        con.execute("DROP TRIGGER stats_files_delete")
        con.execute("UPDATE files SET status = 'CORRUPT' WHERE id <= 2")
        con.execute("DELETE FROM files WHERE id = 5")
        con.execute("UPDATE stats SET n = 42 WHERE key = 'SORTED'")
        con.commit()
        con.close()
        diff = stats.check_and_repair(db, writer)
        assert "trigger stats_files_status was missing" in diff
        assert any("file_status/CORRUPT" in d for d in diff)
        assert any("counters did not match" in m for m in messages)
        counts = assert_in_step(path)
        assert counts[(stats.FILE_STATUS, "CORRUPT")][0] == 2
        # The triggers are back: later changes are counted again.
        writer.call(lambda: File.update(status="MISSING").execute())
        assert assert_in_step(path) == {(stats.FILE_STATUS, "MISSING"): (4, 40)}
        assert stats.check_and_repair(db, writer) == []
    finally:
        logger.remove(sink)
        writer.close()


def test_start_up_rebuilds_counters_that_drifted(service: Any, tmp_path: Path) -> None:
    svc = service()
    from tests.conftest import add_file

    for n in range(3):
        add_file(svc, f"f{n}.jpg", "SORTED", size=100)
    svc.stop()
    path = tmp_path / "db.sqlite"
    con = sqlite3.connect(path)
    con.execute("UPDATE stats SET n = 0, bytes = 0")
    con.commit()
    con.close()
    svc = service()
    wait_until(lambda: svc._counter_check and not svc._counter_check.is_alive())
    counts = assert_in_step(path)
    assert counts[(stats.FILE_STATUS, "SORTED")] == (3, 300)


def test_migration_counts_a_database_made_before_the_counters(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = open_database(path)
    for n, status in enumerate(["SORTED", "SORTED", "DUPLICATE"]):
        new_file(f"f{n}", status, size=n + 1, capture_source="exif")
    db.execute_sql("DROP TABLE stats")
    for name in stats.TRIGGERS:
        db.execute_sql(f"DROP TRIGGER {name}")
    db.execute_sql("DELETE FROM schema_version WHERE version = 6")
    db.close()
    db = open_database(path)
    try:
        counts = assert_in_step(path)
        assert counts[(stats.FILE_STATUS, "SORTED")] == (2, 3)
        assert counts[(stats.FILE_SOURCE, "exif")] == (3, 0)
    finally:
        db.close()
        database_proxy.initialize(None)
