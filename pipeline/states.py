"""File and batch statuses and the one table of the transitions allowed between them.

Every status write checks its edge here (`check_file_transition`,
`check_batch_transition`); the database enforces the same table with a trigger
(`pipeline/db.py`, migration 5), so raw SQL cannot slip past it either.
"""

from __future__ import annotations

from enum import StrEnum, nonmember


class IllegalTransition(ValueError):
    """A status change the transition table does not allow."""


class FileStatus(StrEnum):
    NEW = "NEW"  # seen; settling or being hashed
    HASHED = "HASHED"
    UNIQUE = "UNIQUE"  # accepted, waiting for a batch
    DUPLICATE = (
        "DUPLICATE"  # in duplicates_dir (or an identical twin of a library file)
    )
    BATCHED = "BATCHED"
    SYNCED = "SYNCED"
    SORTED = "SORTED"
    ERROR = "ERROR"  # failed in `error_stage`; left where it is, retried
    SKIPPED = "SKIPPED"  # not media (intake.media_only) or empty: left in the inbox
    MISSING = "MISSING"  # a sorted/adopted file verify found gone
    CORRUPT = "CORRUPT"  # a sorted/adopted file verify found changed

    # Plain tuples of values (not members), in the order counts are shown.
    ALL = nonmember(
        (
            NEW,
            HASHED,
            UNIQUE,
            DUPLICATE,
            BATCHED,
            SYNCED,
            SORTED,
            ERROR,
            SKIPPED,
            MISSING,
            CORRUPT,
        )
    )
    # Accepted content: a new file with the same SHA-256 as one of these is a duplicate.
    ACCEPTED = nonmember((UNIQUE, BATCHED, SYNCED, SORTED))
    # Rows whose file may still sit in the inbox (intake finds them by path).
    IN_INBOX = nonmember((NEW, HASHED, UNIQUE, ERROR, SKIPPED))


class BatchStatus(StrEnum):
    BUILDING = "BUILDING"  # files moving in; finished by batch.resume_building
    CREATED = "CREATED"
    SYNCING = "SYNCING"
    SYNCED = "SYNCED"
    SORTED = "SORTED"  # every file SORTED or DUPLICATE
    ERROR = "ERROR"  # cannot go on without the owner (its folder vanished)

    # The statuses counted and shown; BUILDING is transient (seconds) and not shown.
    ALL = nonmember((CREATED, SYNCING, SYNCED, SORTED, ERROR))


F = FileStatus
B = BatchStatus

# old -> the statuses it may become. A write that keeps the status is not a
# transition and is always allowed.
FILE_TRANSITIONS: dict[FileStatus, frozenset[FileStatus]] = {
    F.NEW: frozenset({F.HASHED, F.ERROR, F.SKIPPED}),
    # Back to NEW: the file changed in the inbox before it was batched.
    F.HASHED: frozenset({F.UNIQUE, F.DUPLICATE, F.ERROR, F.NEW}),
    # DUPLICATE: a near-duplicate resolved as a copy on the dashboard.
    F.UNIQUE: frozenset({F.BATCHED, F.DUPLICATE, F.ERROR, F.NEW}),
    # SORTED straight from BATCHED when Syncthing is off; DUPLICATE when the library
    # already holds the same content at the target.
    F.BATCHED: frozenset({F.SYNCED, F.SORTED, F.DUPLICATE, F.ERROR}),
    F.SYNCED: frozenset({F.SORTED, F.DUPLICATE, F.ERROR}),
    F.SORTED: frozenset({F.MISSING, F.CORRUPT, F.DUPLICATE}),
    F.DUPLICATE: frozenset(),
    # A retry resumes at the stage that failed (see RESUME_AT); NEW also when the
    # file changed in the inbox.
    F.ERROR: frozenset({F.NEW, F.HASHED, F.UNIQUE, F.BATCHED, F.SYNCED}),
    F.SKIPPED: frozenset({F.NEW}),
    # verify: found again (or moved within the library), or content restored.
    F.MISSING: frozenset({F.SORTED, F.CORRUPT}),
    F.CORRUPT: frozenset({F.SORTED, F.MISSING}),
}

BATCH_TRANSITIONS: dict[BatchStatus, frozenset[BatchStatus]] = {
    B.BUILDING: frozenset({B.CREATED}),
    # SORTED straight from CREATED when Syncthing is off.
    B.CREATED: frozenset({B.SYNCING, B.SORTED, B.ERROR}),
    B.SYNCING: frozenset({B.SYNCED, B.ERROR}),
    B.SYNCED: frozenset({B.SORTED, B.ERROR}),
    B.SORTED: frozenset(),
    # A retry resumes where the batch stopped.
    B.ERROR: frozenset({B.CREATED, B.SYNCING, B.SYNCED}),
}

# The stage a failed file is recorded with (`files.error_stage`) -> the status a retry
# gives it back, from which that stage runs again. `sort` depends on the batch: see
# `resume_status`.
RESUME_AT: dict[str, FileStatus] = {
    "register": F.NEW,
    "hash": F.NEW,
    "dedup": F.HASHED,
    "batch": F.UNIQUE,
    "sync": F.BATCHED,
    "sort": F.BATCHED,
}


def resume_status(stage: str | None, batch_synced: bool = False) -> FileStatus:
    """The status an ERROR file failed in `stage` resumes at (NEW for an unknown stage).

    A sort failure resumes at SYNCED when its batch had been through Syncthing.
    """
    if stage == "sort" and batch_synced:
        return F.SYNCED
    return RESUME_AT.get(stage or "", F.NEW)


def _check(table: dict, kind: str, old: str, new: str) -> None:
    if old == new:
        return
    try:
        allowed = table[old]
        target = type(next(iter(table)))(new)
    except (KeyError, ValueError):
        raise IllegalTransition(f"unknown {kind} status: {old} -> {new}") from None
    if target not in allowed:
        raise IllegalTransition(f"illegal {kind} transition: {old} -> {new}")


def check_file_transition(old: str, new: str) -> None:
    """Raise IllegalTransition unless a file may go from `old` to `new`."""
    _check(FILE_TRANSITIONS, "file", old, new)


def check_batch_transition(old: str, new: str) -> None:
    """Raise IllegalTransition unless a batch may go from `old` to `new`."""
    _check(BATCH_TRANSITIONS, "batch", old, new)


def file_sources(new: str) -> tuple[str, ...]:
    """Every status a file may come from to become `new` (itself included)."""
    return (new,) + tuple(o for o, to in FILE_TRANSITIONS.items() if new in to)


def batch_sources(new: str) -> tuple[str, ...]:
    """Every status a batch may come from to become `new` (itself included)."""
    return (new,) + tuple(o for o, to in BATCH_TRANSITIONS.items() if new in to)


class JobStatus:
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    ACTIVE = (QUEUED, RUNNING)


class MoveState:
    PENDING = "PENDING"
    DONE = "DONE"
    ABANDONED = "ABANDONED"
    FAILED = "FAILED"
