"""Peewee models for the tables in docs/SCHEMAS.md.

Models bind to `database_proxy`; `pipeline.db.open_database` initialises it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from peewee import (
    SQL,
    AutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    CompositeKey,
    DatabaseProxy,
    DateTimeField,
    FloatField,
    IntegerField,
    Model,
    TextField,
)

from pipeline.states import BatchStatus, FileStatus, JobStatus, MoveState

__all__ = ["BatchStatus", "FileStatus", "JobStatus", "MoveState"]  # re-exported

database_proxy = DatabaseProxy()


def utcnow() -> datetime:
    """Naive UTC now; every timestamp column stores naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


def sql_list(values: tuple[str, ...]) -> str:
    """`('A', 'B')` for a raw `IN` clause over status constants (never user input)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def sql_time(value: datetime) -> str:
    """A naive UTC datetime as peewee stores it, for raw SQL on hot paths."""
    return value.isoformat(" ")


def iso(value: datetime | None) -> str | None:
    """A stored (naive UTC) timestamp as ISO 8601 with `Z`, or None."""
    return value.isoformat() + "Z" if value else None


def tuples(query: Any) -> Iterator[tuple[Any, ...]]:
    """The rows of a peewee `query` as plain tuples.

    What `query.tuples()` yields; peewee's own stubs type that as the model query, so
    code unpacking its rows would not type-check.
    """
    return iter(query.tuples())


class BaseModel(Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class Batch(BaseModel):
    id = AutoField()
    name = CharField(unique=True)
    status = CharField(default=BatchStatus.CREATED, index=True)
    file_count = IntegerField(default=0)
    size_bytes = BigIntegerField(default=0)
    bytes_needed = BigIntegerField(null=True)
    progress = FloatField(default=0.0)
    location = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    synced_at = DateTimeField(null=True)
    sorted_at = DateTimeField(null=True)
    last_error = TextField(null=True)
    # The stage a batch in ERROR stopped in (`sync`, `sort`): a retry resumes there.
    error_stage = CharField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "batches"


class File(BaseModel):
    id = AutoField()
    original_path = TextField()
    rel_path = TextField()
    current_path = TextField(index=True)
    size = BigIntegerField(null=True)
    mtime_ns = BigIntegerField(null=True)
    sha256 = CharField(max_length=64, null=True, index=True)
    phash = BigIntegerField(null=True)
    status = CharField(default=FileStatus.NEW, index=True)
    duplicate_of = IntegerField(null=True)
    near_duplicate_of = IntegerField(null=True)
    near_distance = IntegerField(null=True)
    batch = IntegerField(null=True)  # indexed by files_batch_status (batch, status)
    capture_time = DateTimeField(null=True)
    capture_source = CharField(null=True)
    target_path = TextField(null=True)
    error = TextField(null=True)
    # The stage an ERROR file failed in; a retry resumes there (pipeline/retry.py).
    error_stage = CharField(null=True)
    # When an automatic retry is due; None: only on request.
    next_retry_at = DateTimeField(null=True)
    # Retries since the last failure-free run or retry request.
    attempts = IntegerField(default=0)
    # `inbox` (taken in through the pipeline) or `adopted` (recorded in place by
    # pipeline/adopt.py). A SQL default, so raw INSERTs need not name it.
    source = CharField(null=True, constraints=[SQL("DEFAULT 'inbox'")])
    created_at = DateTimeField(default=utcnow, index=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "files"


class Job(BaseModel):
    id = AutoField()
    kind = CharField(index=True)
    status = CharField(default=JobStatus.QUEUED, index=True)
    params = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    started_at = DateTimeField(null=True)
    finished_at = DateTimeField(null=True)
    total = IntegerField(default=0)
    done = IntegerField(default=0)
    errors = IntegerField(default=0)
    message = TextField(null=True)
    result = TextField(null=True)

    class Meta:
        table_name = "jobs"


class ConfigChange(BaseModel):
    id = AutoField()
    at = DateTimeField(default=utcnow)
    source = CharField(default="api")
    keys = TextField()
    old = TextField()
    new = TextField()

    class Meta:
        table_name = "config_changes"


class MoveJournal(BaseModel):
    """One planned file move; PENDING until settled (see pipeline/fsops/)."""

    id = AutoField()
    src = TextField()
    dst = TextField()
    tmp = TextField(null=True)
    method = CharField()
    state = CharField(default=MoveState.PENDING, index=True)
    file_id = IntegerField(null=True, index=True)
    new_status = CharField(null=True)
    sha256 = CharField(max_length=64, null=True)
    size = BigIntegerField(null=True)
    error = TextField(null=True)
    created_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True)

    class Meta:
        table_name = "move_journal"


class FileSource:
    INBOX = "inbox"
    ADOPTED = "adopted"


class RootKind:
    LIBRARY = "library"  # inside sorted_dir
    REFERENCE = "reference"  # outside every configured folder: read-only


class RootState:
    ADOPTING = "ADOPTING"  # an adoption started and has not finished: resumed at start
    ADOPTED = "ADOPTED"


class LibraryRoot(BaseModel):
    """A folder recorded in place by `media-pipeline adopt` (see pipeline/adopt.py)."""

    id = AutoField()
    path = TextField(unique=True)
    kind = CharField(default=RootKind.LIBRARY)
    state = CharField(default=RootState.ADOPTING)
    files = IntegerField(default=0)
    duplicates = IntegerField(default=0)
    created_at = DateTimeField(default=utcnow)
    adopted_at = DateTimeField(null=True)
    updated_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "library_roots"


class VerifyRun(BaseModel):
    """One library check (see pipeline/verify.py); the latest is shown by /health."""

    id = AutoField()
    job_id = IntegerField(null=True)
    hashed = BooleanField(default=False)
    scheduled = BooleanField(default=False)
    started_at = DateTimeField(default=utcnow)
    finished_at = DateTimeField(null=True, index=True)
    checked = IntegerField(default=0)
    missing = IntegerField(default=0)
    corrupt = IntegerField(default=0)
    moved = IntegerField(default=0)
    restored = IntegerField(default=0)
    bytes_read = BigIntegerField(default=0)
    error = TextField(null=True)

    class Meta:
        table_name = "verify_runs"


class NearKeep(BaseModel):
    """A pair of images the owner kept both of: never flagged as near-duplicates again.

    `low` < `high` (file ids), so a pair is one row whichever file was flagged.
    """

    low = IntegerField()
    high = IntegerField()
    at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "near_keeps"
        primary_key = CompositeKey("low", "high")


class SchemaVersion(BaseModel):
    version = IntegerField(primary_key=True)
    applied_at = DateTimeField(default=utcnow)

    class Meta:
        table_name = "schema_version"


ALL_MODELS = [
    Batch,
    File,
    Job,
    ConfigChange,
    MoveJournal,
    LibraryRoot,
    VerifyRun,
    NearKeep,
    SchemaVersion,
]
