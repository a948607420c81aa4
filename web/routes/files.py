"""GET /api/files (paginated by id), GET /api/files/{id}."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline.hashing import from_signed64
from pipeline.models import File, FileStatus, iso
from web.errors import ApiError, ok
from web.routes.common import int_param, path_id, threaded


def file_dict(row: File) -> dict[str, Any]:
    """A file as the API shows it."""
    return {
        "id": row.id,
        "original_path": row.original_path,
        "current_path": row.current_path,
        "size": row.size,
        "sha256": row.sha256,
        "phash": f"{from_signed64(row.phash):016x}" if row.phash is not None else None,
        "status": row.status,
        "duplicate_of": row.duplicate_of,
        "near_duplicate_of": row.near_duplicate_of,
        "near_distance": row.near_distance,
        "batch": row.batch,
        "capture_time": iso(row.capture_time),
        "capture_source": row.capture_source,
        "target_path": row.target_path,
        "error": row.error,
        "error_stage": row.error_stage,
        "next_retry_at": iso(row.next_retry_at),
        "attempts": row.attempts,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def list_files(status: str | None, limit: int, after: int) -> dict[str, Any]:
    query = File.select().where(File.id > after).order_by(File.id).limit(limit + 1)
    if status:
        query = query.where(File.status == status)
    rows = list(query)
    more = len(rows) > limit
    rows = rows[:limit]
    return {
        "files": [file_dict(r) for r in rows],
        "next_after": rows[-1].id if more and rows else None,
    }


async def files(request: Request) -> JSONResponse:
    status = request.query_params.get("status") or None
    if status is not None:
        status = status.upper()
        if status not in FileStatus.ALL:
            raise ApiError(400, f"status: must be one of {', '.join(FileStatus.ALL)}")
    limit = int_param(request, "limit", 100, 1, 1000)
    after = int_param(request, "after", 0, 0, 2**62)
    return ok(await threaded(list_files, status, limit, after))


async def one_file(request: Request) -> JSONResponse:
    file_id = path_id(request)
    row = await threaded(File.get_or_none, File.id == file_id)
    if row is None:
        raise ApiError(404, f"no file with id {file_id}")
    return ok({"file": file_dict(row)})


routes = [
    Route("/api/files", files, methods=["GET"]),
    Route("/api/files/{id}", one_file, methods=["GET"]),
]
