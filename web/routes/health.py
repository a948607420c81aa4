"""GET /health: version, uptime and the state of each component; never needs auth."""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import verify
from pipeline.models import File
from web.errors import ok
from web.state import AppState


def database_state() -> str:
    try:
        File.select(File.id).limit(1).execute()
        return "ok"
    except Exception:
        return "error"


def last_verify() -> dict[str, Any] | None:
    """The last library verify and what it found; None if never run or unreadable."""
    try:
        return verify.last_run()
    except Exception:
        return None


async def health(request: Request) -> JSONResponse:
    state: AppState = request.app.state.media
    components = dict(state.components())
    components["database"] = await run_in_threadpool(database_state)
    data = {
        "version": state.version,
        "uptime_seconds": round(time.monotonic() - state.started, 1),
        "components": components,
        "last_verify": await run_in_threadpool(last_verify),
    }
    response = ok(data, 503 if components["database"] != "ok" else 200)
    return response


routes = [Route("/health", health, methods=["GET"])]
