"""Small helpers every route module uses: bodies, ids, threads, serialisation."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from web.errors import ApiError
from web.state import AppState

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
MAX_BODY = 1 << 20


class Body(BaseModel):
    """Base for request bodies: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


def state(request: Request) -> AppState:
    return request.app.state.media


async def body(request: Request, model: type[M]) -> M:
    """Parse an optional JSON body into `model`; 400 VALIDATION_ERROR when it does not fit."""
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ApiError(413, "request body too large")
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}") from None


def path_id(request: Request, name: str = "id") -> int:
    """A numeric id from the path; anything else is 404 (no such resource)."""
    value = request.path_params[name]
    if not value.isdigit() or len(value) > 18:
        raise ApiError(404, f"no such {name}: {value!r}")
    return int(value)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    if not value.lstrip("-").isdigit() or not low <= int(value) <= high:
        raise ApiError(
            400, f"{name}: must be an integer from {low} to {high} (got {value!r})"
        )
    return int(value)


async def threaded(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work (database, files) off the event loop."""
    return await run_in_threadpool(fn, *args)
