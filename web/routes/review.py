"""Near-duplicate review and previews: GET /api/duplicates, POST /api/duplicates/{id}/resolve,
GET /api/files/{id}/thumbnail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from pipeline import review, thumbnail
from pipeline.models import File, LibraryRoot
from web.errors import ApiError, ok
from web.routes.common import Body, body, int_param, path_id, state, threaded
from web.routes.files import file_dict


class Resolve(Body):
    action: Literal["keep", "duplicate"]


def groups_page(limit: int, after: int) -> dict[str, Any]:
    groups, next_after = review.near_groups(limit, after)
    return {
        "groups": [
            {
                "file": file_dict(g.file) if g.file else {"id": g.file_id},
                "members": [
                    {"file": file_dict(m), "distance": m.near_distance}
                    for m in g.members
                ],
            }
            for g in groups
        ],
        "next_after": next_after,
    }


async def duplicates(request: Request) -> JSONResponse:
    limit = int_param(request, "limit", 50, 1, 500)
    after = int_param(request, "after", 0, 0, 2**62)
    return ok(await threaded(groups_page, limit, after))


async def resolve(request: Request) -> JSONResponse:
    file_id = path_id(request)
    params = await body(request, Resolve)
    ctx = state(request).ctx
    act = review.keep if params.action == "keep" else review.mark_duplicate
    try:
        row = await threaded(act, ctx, file_id)
    except review.ReviewError as exc:
        raise ApiError(exc.code, str(exc)) from None
    return ok({"action": params.action, "file": file_dict(row)})


def inside_roots(ctx: Any, path: str) -> bool:
    """Whether `path` (its folder, symlinks resolved) is inside a folder we may read.

    The configured folders, and folders adopted in place (a reference library outside
    them is read-only to the daemon, but its pictures may be previewed).
    """
    roots = ctx.roots
    folder = os.path.realpath(os.path.dirname(path))
    adopted = [r.path for r in LibraryRoot.select(LibraryRoot.path)]
    for root in (
        roots.inbox,
        roots.duplicates_dir,
        roots.batch_dir,
        roots.sync_dir,
        roots.sorted_dir,
        *adopted,
    ):
        real = os.path.realpath(root)
        if folder == real or folder.startswith(real + os.sep):
            return True
    return False


def make_thumbnail(ctx: Any, file_id: int) -> Path:
    row = File.get_or_none(File.id == file_id)
    if row is None:
        raise ApiError(404, f"no file with id {file_id}")
    if not inside_roots(ctx, row.current_path):
        raise ApiError(404, f"file {file_id} is not inside a configured folder")
    with ctx.fs_slots:
        made = thumbnail.thumbnail(
            Path(row.current_path), ctx.roots.temp_dir, row.id, row.sha256
        )
    if made is None:
        raise ApiError(404, f"file {file_id} is not an image this daemon can preview")
    return made


async def thumb(request: Request) -> Response:
    file_id = path_id(request)
    path = await threaded(make_thumbnail, state(request).ctx, file_id)
    return FileResponse(
        path,
        media_type="image/jpeg",
        headers={"Cache-Control": "private, max-age=3600"},
    )


routes = [
    Route("/api/duplicates", duplicates, methods=["GET"]),
    Route("/api/duplicates/{id}/resolve", resolve, methods=["POST"]),
    Route("/api/files/{id}/thumbnail", thumb, methods=["GET"]),
]
