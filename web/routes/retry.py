"""POST /api/files/{id}/retry and POST /api/files/retry: failed files resume."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import jobs, retry
from pipeline.models import File, FileStatus, Job
from pipeline.store import db_conn
from web.errors import ApiError, ok
from web.routes.common import Body, body, path_id, state, threaded
from web.routes.files import file_dict
from web.state import AppState

MAX_IDS = 10_000


class RetryMany(Body):
    ids: list[int] | None = Field(None, min_length=1, max_length=MAX_IDS)


def _ask(app: AppState, ids: list[int] | None) -> tuple[int, list[int]]:
    ctx = app.ctx
    return ctx.writer.call(lambda: retry.request_retry(db_conn(), ctx.clock(), ids))


def _start(app: AppState, batches: list[int]) -> dict[str, Any]:
    """The retry job (the running one, which takes the newly due files too)."""
    job, _ = app.jobs.start(
        "retry",
        lambda h: retry.retry_job(app.ctx, h, tuple(batches)),
        {"batches": batches},
    )
    return jobs.job_dict(Job.get_by_id(job.id))


async def retry_one(request: Request) -> JSONResponse:
    file_id = path_id(request)
    app = state(request)
    row = await threaded(File.get_or_none, File.id == file_id)
    if row is None:
        raise ApiError(404, f"no file with id {file_id}")
    if row.status != FileStatus.ERROR:
        raise ApiError(409, f"file {file_id} is {row.status}, not ERROR")
    asked, _ = await threaded(_ask, app, [file_id])
    if not asked:  # it left ERROR meanwhile (an automatic retry got there first)
        raise ApiError(409, f"file {file_id} is no longer ERROR")
    job = await threaded(_start, app, [])
    row = await threaded(File.get_by_id, file_id)
    return ok({"file": file_dict(row), "job": job}, 202)


async def retry_many(request: Request) -> JSONResponse:
    params = await body(request, RetryMany)
    app = state(request)
    ids = sorted(set(params.ids)) if params.ids else None
    asked, batches = await threaded(_ask, app, ids)
    job = await threaded(_start, app, batches) if asked or batches else None
    data = {"retried": asked, "batches": batches, "job": job}
    return ok(data, 202 if job else 200)


routes = [
    Route("/api/files/retry", retry_many, methods=["POST"]),
    Route("/api/files/{id}/retry", retry_one, methods=["POST"]),
]
