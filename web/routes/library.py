"""POST /api/library/adopt, POST /api/library/verify and GET /api/library/status."""

from __future__ import annotations

from typing import Any

from pydantic import Field, StrictBool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import adopt, jobs, verify
from pipeline.models import Job, LibraryRoot, iso
from web.errors import ApiError, ok
from web.routes.common import Body, body, state, threaded


class AdoptBody(Body):
    path: str | None = Field(None, min_length=1, max_length=4096)


class VerifyBody(Body):
    hash: StrictBool = False


async def start_adopt(request: Request) -> JSONResponse:
    params = await body(request, AdoptBody)
    app = state(request)
    try:
        target = await threaded(adopt.resolve_target, app.ctx.roots, params.path)
    except adopt.AdoptRefused as exc:
        raise ApiError(400, f"path: {exc}") from None
    paths: list[str | None] = [str(target.path)]
    job, _ = await threaded(
        app.jobs.start,
        "adopt",
        lambda h: adopt.adopt_job(app.ctx, h, paths),
        {"paths": paths},
    )
    return ok(
        {"job": await threaded(lambda: jobs.job_dict(Job.get_by_id(job.id)))}, 202
    )


async def start_verify(request: Request) -> JSONResponse:
    params = await body(request, VerifyBody)
    app = state(request)
    job, _ = await threaded(
        app.jobs.start,
        "verify",
        lambda h: verify.verify_job(app.ctx, h, hash_all=params.hash),
        {"hash": params.hash},
    )
    return ok(
        {"job": await threaded(lambda: jobs.job_dict(Job.get_by_id(job.id)))}, 202
    )


def library_status() -> dict[str, Any]:
    """Latest adopt and verify jobs, the last verify's findings and the adopted roots."""
    latest = {kind: jobs.latest(kind) for kind in ("adopt", "verify")}
    return {
        **{kind: jobs.job_dict(job) if job else None for kind, job in latest.items()},
        "last_verify": verify.last_run(),
        "roots": [
            {
                "path": root.path,
                "kind": root.kind,
                "state": root.state,
                "files": root.files,
                "duplicates": root.duplicates,
                "adopted_at": iso(root.adopted_at),
            }
            for root in LibraryRoot.select().order_by(LibraryRoot.id)
        ],
    }


async def status(request: Request) -> JSONResponse:
    return ok(await threaded(library_status))


routes = [
    Route("/api/library/adopt", start_adopt, methods=["POST"]),
    Route("/api/library/verify", start_verify, methods=["POST"]),
    Route("/api/library/status", status, methods=["GET"]),
]
