"""The transition table: every status has a row, and illegal edges raise."""

from __future__ import annotations

import pytest

from pipeline import models
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
