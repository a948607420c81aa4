"""POST /api/sync/start and GET /api/sync/status."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import sync
from pipeline.batch import batch_dict
from pipeline.syncthing import SyncthingError
from web.errors import ApiError, ok
from web.routes.common import Body, body, state, threaded


class SyncStart(Body):
    batch_id: int | None = Field(None, ge=1)


async def start(request: Request) -> JSONResponse:
    params = await body(request, SyncStart)
    ctx = state(request).ctx
    try:
        moved = await threaded(sync.start_sync, ctx, params.batch_id)
    except sync.SyncDisabled as exc:
        raise ApiError(409, str(exc)) from None
    except sync.NotReady as exc:
        raise ApiError(409, str(exc)) from None
    except LookupError as exc:
        raise ApiError(404, str(exc)) from None
    except SyncthingError as exc:
        raise ApiError(502, f"Syncthing: {exc}") from None
    return ok({"batches": [batch_dict(b) for b in moved]}, 202)


async def status(request: Request) -> JSONResponse:
    return ok({"batches": await threaded(sync.sync_status)})


routes = [
    Route("/api/sync/start", start, methods=["POST"]),
    Route("/api/sync/status", status, methods=["GET"]),
]
