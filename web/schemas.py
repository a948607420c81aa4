"""The shapes of the API's answers, declared once (pydantic).

`web/openapi/` generates its component schemas from these models, and
tests/web/test_api.py validates real answers against them, so the document, the
code and the answers cannot drift apart. Every key is required (a nullable one is
`X | None`): the answers always carry every key, `null` when there is no value.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.json_schema import GenerateJsonSchema, models_json_schema

from pipeline.states import BatchStatus, FileStatus, JobStatus

REF_TEMPLATE = "#/components/schemas/{model}"
JOB_STATUSES: list[JsonValue] = [
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.DONE,
    JobStatus.FAILED,
]


class Shape(BaseModel):
    """An answer object: unknown keys are an error, so a new key must be declared."""

    model_config = ConfigDict(extra="forbid")


class Error(Shape):
    """The error envelope (SPEC §6)."""

    status: Literal["error"]
    code: Literal[
        "VALIDATION_ERROR",
        "UNAUTHORIZED",
        "NOT_FOUND",
        "CONFLICT",
        "RATE_LIMITED",
        "INTERNAL_ERROR",
        "DEPENDENCY_ERROR",
    ]
    message: str


class Job(Shape):
    """A job (pipeline.jobs.job_dict)."""

    id: int
    kind: str
    status: str = Field(json_schema_extra={"enum": JOB_STATUSES})
    started_at: str | None
    finished_at: str | None
    total: int
    done: int
    progress: float = Field(ge=0, le=100)
    errors: int
    message: str | None
    result: dict[str, Any] | None


class File(Shape):
    """A file (web.routes.files.file_dict); `phash` is 16 hex digits."""

    id: int
    original_path: str
    current_path: str
    size: int | None
    sha256: str | None
    phash: str | None
    status: FileStatus
    duplicate_of: int | None
    near_duplicate_of: int | None
    near_distance: int | None
    batch: int | None
    capture_time: str | None
    capture_source: str | None
    target_path: str | None
    error: str | None
    error_stage: str | None
    next_retry_at: str | None
    attempts: int
    created_at: str | None
    updated_at: str | None


class Batch(Shape):
    """A batch (pipeline.batch.batch_dict); `manifest` only in GET /api/batches/{id}."""

    id: int
    name: str
    status: BatchStatus
    file_count: int
    size_bytes: int
    progress: float
    bytes_needed: int | None
    location: str | None
    created_at: str | None
    synced_at: str | None
    sorted_at: str | None
    last_error: str | None
    manifest: dict[str, Any] | None = None


class VerifySummary(Shape):
    """The latest finished verify and the library's current findings."""

    finished_at: str | None
    hashed: bool
    checked: int
    found_missing: int
    found_corrupt: int
    moved: int
    restored: int
    missing_now: int
    corrupt_now: int
    ok: bool


class Counts(Shape):
    total: int
    by_status: dict[str, int]


class Storage(Shape):
    """Bytes of tracked files in each folder."""

    inbox: int
    duplicates_dir: int
    batch_dir: int
    sync_dir: int
    sorted_dir: int


class Waiting(Shape):
    """Files waiting for a batch, and when the next batch is due."""

    files: int
    bytes: int
    next_batch_at: str | None
    max_bytes: int | None


class RecentError(Shape):
    file_id: int
    path: str
    error: str | None
    at: str | None


class HourCount(Shape):
    hour: str
    count: int


class Dashboard(Shape):
    """GET /api/dashboard (pipeline.dashboard.dashboard)."""

    files: Counts
    unique: int
    duplicates: int
    near_duplicates: int
    batches: Counts
    storage: Storage
    waiting: Waiting
    capture_sources: dict[str, int]
    mtime_dated: int
    recent_errors: list[RecentError]
    files_per_hour: list[HourCount]
    last_verify: VerifySummary | None


MODELS: tuple[type[Shape], ...] = (Error, Job, File, Batch, VerifySummary, Dashboard)


class _Schema(GenerateJsonSchema):
    """Model titles only: a title per field would repeat its name."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def component_schemas() -> dict[str, Any]:
    """The OpenAPI `components.schemas` of every model (and the ones they nest)."""
    _, top = models_json_schema(
        [(model, "validation") for model in MODELS],
        ref_template=REF_TEMPLATE,
        schema_generator=_Schema,
    )
    defs: dict[str, Any] = top["$defs"]
    return dict(sorted(defs.items()))
