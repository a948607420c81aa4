"""GET /api/files (paginated by id), GET /api/files/{id}, GET /api/duplicates."""

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


def near_groups(limit: int) -> list[dict[str, Any]]:
    """Each flagged image with the accepted image it resembles, grouped by the latter."""
    flagged = list(
        File.select()
        .where(File.near_duplicate_of.is_null(False))
        .order_by(File.near_duplicate_of, File.id)
        .limit(limit)
    )
    originals = {
        r.id: r
        for r in File.select().where(
            File.id.in_({f.near_duplicate_of for f in flagged})
        )
    }
    groups: dict[int, dict[str, Any]] = {}
    for row in flagged:
        base = originals.get(row.near_duplicate_of)
        group = groups.setdefault(
            row.near_duplicate_of,
            {
                "file": _brief(base) if base else {"id": row.near_duplicate_of},
                "similar": [],
            },
        )
        group["similar"].append({**_brief(row), "distance": row.near_distance})
    return list(groups.values())


def _brief(row: File) -> dict[str, Any]:
    return {
        "id": row.id,
        "path": row.current_path,
        "status": row.status,
        "size": row.size,
    }


async def duplicates(request: Request) -> JSONResponse:
    limit = int_param(request, "limit", 500, 1, 5000)
    return ok({"groups": await threaded(near_groups, limit)})


routes = [
    Route("/api/files", files, methods=["GET"]),
    Route("/api/files/{id}", one_file, methods=["GET"]),
    Route("/api/duplicates", duplicates, methods=["GET"]),
]
