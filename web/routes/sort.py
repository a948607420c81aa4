"""POST /api/sort/start and GET /api/sort/status."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import jobs, sort
from pipeline.models import Batch, Job
from pipeline.status import sort_counts
from web.errors import ApiError, ok
from web.routes.common import Body, body, state, threaded


class SortStart(Body):
    batch_id: int | None = Field(None, ge=1)
    dry_run: bool | None = None


async def start(request: Request) -> JSONResponse:
    params = await body(request, SortStart)
    app = state(request)
    if params.batch_id is not None:
        batch = await threaded(Batch.get_or_none, Batch.id == params.batch_id)
        if batch is None:
            raise ApiError(404, f"no batch with id {params.batch_id}")
    job, _ = await threaded(
        app.jobs.start,
        "sort",
        lambda h: sort.sort_job(app.ctx, h, params.batch_id, params.dry_run),
        params.model_dump(),
    )
    return ok(
        {"job": await threaded(lambda: jobs.job_dict(Job.get_by_id(job.id)))}, 202
    )


async def status(request: Request) -> JSONResponse:
    def read() -> dict[str, Any]:
        job = jobs.latest("sort")
        return {
            "job": jobs.job_dict(job) if job else None,
            "counts": sort_counts(),
        }

    return ok(await threaded(read))


routes = [
    Route("/api/sort/start", start, methods=["POST"]),
    Route("/api/sort/status", status, methods=["GET"]),
]
