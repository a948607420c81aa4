"""POST /api/dedup/start and GET /api/dedup/status."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import jobs
from pipeline.models import Job
from pipeline.scan import scan_inbox
from pipeline.status import dedup_counts
from web.errors import ok
from web.routes.common import Body, body, state, threaded


class DedupStart(Body):
    pass


async def start(request: Request) -> JSONResponse:
    await body(request, DedupStart)
    app = state(request)
    job, _ = await threaded(app.jobs.start, "dedup", lambda h: scan_inbox(app.ctx, h))
    return ok(
        {"job": await threaded(lambda: jobs.job_dict(Job.get_by_id(job.id)))}, 202
    )


async def status(request: Request) -> JSONResponse:
    def read() -> dict[str, Any]:
        job = jobs.latest("dedup")
        return {"job": jobs.job_dict(job) if job else None, "counts": dedup_counts()}

    return ok(await threaded(read))


routes = [
    Route("/api/dedup/start", start, methods=["POST"]),
    Route("/api/dedup/status", status, methods=["GET"]),
]
