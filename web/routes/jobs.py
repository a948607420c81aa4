"""GET /api/jobs/{id}: one job by id, for clients that follow a job they started."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import jobs
from pipeline.models import Job
from web.errors import ApiError, ok
from web.routes.common import path_id, threaded


async def one(request: Request) -> JSONResponse:
    job_id = path_id(request)
    job = await threaded(Job.get_or_none, Job.id == job_id)
    if job is None:
        raise ApiError(404, f"no job with id {job_id}")
    return ok({"job": jobs.job_dict(job)})


routes = [Route("/api/jobs/{id}", one, methods=["GET"])]
