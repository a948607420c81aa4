"""The transition table: every status has a row, and illegal edges raise."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee
import pytest

from pipeline import models, store
from pipeline.context import Context
from pipeline.db import open_database
from pipeline.models import Batch, File, database_proxy
from pipeline.states import (
    BATCH_TRANSITIONS,
    FILE_TRANSITIONS,
    BatchStatus,
    FileStatus,
    IllegalTransition,
    batch_sources,
    check_batch_transition,
    check_file_transition,
    file_sources,
    resume_status,
)


def test_every_status_has_a_row_and_targets_are_statuses() -> None:
    assert set(FILE_TRANSITIONS) == set(FileStatus)
    assert set(BATCH_TRANSITIONS) == set(BatchStatus)
    assert set(FileStatus.ALL) == {s.value for s in FileStatus}
    assert set(BatchStatus.ALL) == {s.value for s in BatchStatus} - {"BUILDING"}


def test_models_reexport_the_enums() -> None:
    assert models.FileStatus is FileStatus and models.BatchStatus is BatchStatus
    assert FileStatus.SORTED == "SORTED" and f"{FileStatus.ERROR}" == "ERROR"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("NEW", "HASHED"),
        ("HASHED", "DUPLICATE"),
        ("BATCHED", "SORTED"),
        ("SYNCED", "ERROR"),
        ("ERROR", "SYNCED"),
        ("ERROR", "UNIQUE"),
        ("NEW", "SKIPPED"),
        ("SORTED", "MISSING"),
        ("MISSING", "SORTED"),
        ("CORRUPT", "SORTED"),
        ("SORTED", "SORTED"),
    ],
)
def test_allowed_file_edges(old: str, new: str) -> None:
    check_file_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("SORTED", "ERROR"),
        ("DUPLICATE", "UNIQUE"),
        ("NEW", "SORTED"),
        ("ERROR", "SORTED"),
        ("SKIPPED", "BATCHED"),
        ("MISSING", "ERROR"),
        ("NEW", "BOGUS"),
        ("BOGUS", "NEW"),
    ],
)
def test_illegal_file_edges_raise(old: str, new: str) -> None:
    with pytest.raises(IllegalTransition, match=f"{old} -> {new}"):
        check_file_transition(old, new)


def test_batch_edges() -> None:
    check_batch_transition("BUILDING", "CREATED")
    check_batch_transition("CREATED", "SORTED")
    check_batch_transition("ERROR", "SYNCING")
    for old, new in [("SORTED", "CREATED"), ("BUILDING", "SORTED"), ("SYNCED", "x")]:
        with pytest.raises(IllegalTransition):
            check_batch_transition(old, new)


def test_sources_and_resume() -> None:
    assert set(file_sources("SORTED")) == {
        "SORTED",
        "BATCHED",
        "SYNCED",
        "MISSING",
        "CORRUPT",
    }
    assert set(batch_sources("SYNCED")) == {"SYNCED", "SYNCING", "ERROR"}
    assert resume_status("sort") == FileStatus.BATCHED
    assert resume_status("sort", batch_synced=True) == FileStatus.SYNCED
    assert resume_status("dedup") == FileStatus.HASHED
    assert resume_status("batch") == FileStatus.UNIQUE
    assert resume_status(None) == FileStatus.NEW
    for stage in ("register", "hash", "dedup", "batch", "sync", "sort"):
        check_file_transition("ERROR", resume_status(stage))
        check_file_transition("ERROR", resume_status(stage, batch_synced=True))


def test_store_refuses_an_illegal_transition(ctx: Context) -> None:
    """The store checks the edge and writes nothing when it is illegal."""
    file_id = ctx.writer.call(
        lambda: File.create(
            original_path="/x", rel_path="x", current_path="/x", status="SORTED"
        ).id
    )
    with pytest.raises(IllegalTransition, match="SORTED -> ERROR"):
        ctx.writer.call(
            lambda: store.set_file_status(
                store.db_conn(), file_id, FileStatus.ERROR, error="x"
            )
        )
    row = File.get_by_id(file_id)
    assert (row.status, row.error) == ("SORTED", None)
    assert (
        ctx.writer.call(
            lambda: store.set_file_status(store.db_conn(), file_id, FileStatus.MISSING)
        )
        == "SORTED"
    )


def test_sqlite_refuses_an_illegal_transition_from_raw_sql(ctx: Context) -> None:
    """In strict mode (the test suite) even raw SQL cannot take an illegal edge."""
    batch = ctx.writer.call(lambda: Batch.create(name="b", status="SORTED").id)
    file_id = ctx.writer.call(
        lambda: File.create(
            original_path="/x", rel_path="x", current_path="/x", status="NEW"
        ).id
    )
    with pytest.raises(sqlite3.IntegrityError, match="IllegalTransition"):
        ctx.writer.call(
            lambda: store.db_conn().execute(
                "UPDATE files SET status = 'SORTED' WHERE id = ?", (file_id,)
            )
        )
    with pytest.raises(peewee.IntegrityError, match="IllegalTransition"):
        ctx.writer.call(
            lambda: Batch.update(status="CREATED").where(Batch.id == batch).execute()
        )
    with pytest.raises(peewee.IntegrityError, match="unknown file status"):
        ctx.writer.call(
            lambda: File.create(
                original_path="/y", rel_path="y", current_path="/y", status="DONE"
            )
        )
    ctx.writer.call(
        lambda: store.db_conn().execute(
            "UPDATE files SET status = 'HASHED' WHERE id = ?", (file_id,)
        )
    )
    assert File.get_by_id(file_id).status == "HASHED"


def test_strict_checks_are_off_unless_asked(tmp_path: Path) -> None:
    db = open_database(tmp_path / "plain.sqlite", strict_states=False)
    try:
        db.execute_sql(
            "INSERT INTO files (original_path, rel_path, current_path, status,"
            " attempts, created_at, updated_at) VALUES ('/a', 'a', '/a', 'SORTED', 0,"
            " '2024-01-01', '2024-01-01')"
        )
        db.execute_sql("UPDATE files SET status = 'NEW'")  # not checked by SQLite
    finally:
        db.close()
        database_proxy.initialize(None)
