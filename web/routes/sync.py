"""POST /api/sync/start and GET /api/sync/status."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import jobs, sync
from pipeline.batch import batch_dict
from pipeline.models import Job
from pipeline.syncthing import SyncthingError
from web.errors import ApiError, ok
from web.routes.common import Body, body, state, threaded


class SyncStart(Body):
    batch_id: int | None = Field(None, ge=1)


async def start(request: Request) -> JSONResponse:
    """202 with the `sync` job at once; the moves and Syncthing's rescan run in it.

    The preconditions are answered here (409 disabled, not CREATED or not Send Only;
    404 unknown batch; 502 folder type unreadable in one quick call): they never wait
    on a scan, a hand-over in progress or the client's retries.
    """
    params = await body(request, SyncStart)
    app = state(request)
    ctx = app.ctx
    try:
        waiting = await threaded(sync.prepare_start, ctx, params.batch_id)
    except sync.SyncDisabled as exc:
        raise ApiError(409, str(exc)) from None
    except sync.NotReady as exc:
        raise ApiError(409, str(exc)) from None
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except SyncthingError as exc:
        raise ApiError(502, sync.describe(exc)) from None
    job, _ = await threaded(
        app.jobs.start,
        "sync",
        lambda h: sync.sync_job(ctx, h, params.batch_id),
        params.model_dump(),
    )
    return ok(
        {
            "job": await threaded(lambda: jobs.job_dict(Job.get_by_id(job.id))),
            "batches": [batch_dict(b) for b in waiting],
        },
        202,
    )


async def status(request: Request) -> JSONResponse:
    return ok({"batches": await threaded(sync.sync_status)})


routes = [
    Route("/api/sync/start", start, methods=["POST"]),
    Route("/api/sync/status", status, methods=["GET"]),
]
