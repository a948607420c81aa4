"""GET /api/config (secrets masked) and PUT /api/config (deep-merged, validated, saved)."""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from web.errors import ApiError, ok
from web.routes.common import MAX_BODY, state, threaded


async def get_config(request: Request) -> JSONResponse:
    return ok({"config": state(request).config.masked()})


async def put_config(request: Request) -> JSONResponse:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "request body too large")
    try:
        patch = json.loads(raw or b"null")
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(patch, dict) or not patch:
        raise ApiError(400, "body must be a non-empty JSON object of config sections")
    try:
        new, restart = await threaded(state(request).config.update, patch)
    except ValueError as exc:
        problems = (
            exc.args[0] if exc.args and isinstance(exc.args[0], list) else [str(exc)]
        )
        raise ApiError(400, "; ".join(problems)) from None
    return ok({"config": new, "restart_required": restart})


routes = [
    Route("/api/config", get_config, methods=["GET"]),
    Route("/api/config", put_config, methods=["PUT"]),
]
