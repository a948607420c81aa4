"""POST /api/batch/create, GET /api/batches, GET /api/batches/{id}."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline import batch as batches
from pipeline.models import Batch
from web.errors import ApiError, ok
from web.routes.common import Body, body, int_param, path_id, state, threaded


class BatchCreate(Body):
    max_size_gb: float | None = Field(None, gt=0, le=10_000)


async def create(request: Request) -> JSONResponse:
    params = await body(request, BatchCreate)
    ctx = state(request).ctx
    made = await threaded(batches.create_batch, ctx, params.max_size_gb)
    if made is None:
        return ok({"batch": None}, 200)
    return ok({"batch": batches.batch_dict(made)}, 201)


def list_batches(status: str | None, limit: int) -> list[dict[str, Any]]:
    query = Batch.select().order_by(Batch.id.desc()).limit(limit)
    if status:
        query = query.where(Batch.status == status)
    return [batches.batch_dict(b) for b in query]


async def index(request: Request) -> JSONResponse:
    status = (request.query_params.get("status") or "").upper() or None
    limit = int_param(request, "limit", 100, 1, 1000)
    return ok({"batches": await threaded(list_batches, status, limit)})


def detail(ctx: Any, batch_id: int) -> dict[str, Any] | None:
    batch = Batch.get_or_none(Batch.id == batch_id)
    if batch is None:
        return None
    folder = batches.location_of(ctx, batch)
    return {
        "batch": {
            **batches.batch_dict(batch),
            "manifest": batches.read_manifest(folder),
        }
    }


async def one(request: Request) -> JSONResponse:
    batch_id = path_id(request)
    data = await threaded(detail, state(request).ctx, batch_id)
    if data is None:
        raise ApiError(404, f"no batch with id {batch_id}")
    return ok(data)


routes = [
    Route("/api/batch/create", create, methods=["POST"]),
    Route("/api/batches", index, methods=["GET"]),
    Route("/api/batches/{id}", one, methods=["GET"]),
]
