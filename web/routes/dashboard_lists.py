"""The dashboard's paginated lists: near-duplicate groups, problems and file search.

HTML fragments htmx swaps into the review, problems and files pages; like every
fragment they need the API key.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from peewee import fn
from starlette.requests import Request
from starlette.responses import HTMLResponse

from pipeline import review, thumbnail
from pipeline.hashing import is_image
from pipeline.models import File, FileStatus
from web.errors import ApiError
from web.pages import FILE_STATES, render
from web.routes.common import int_param, state, threaded
from web.routes.review import inside_roots

PAGE_SIZE = 50


GROUPS_PER_PAGE = 10


def member(ctx: Any, row: File, distance: int | None = None) -> dict[str, Any]:
    path = Path(row.current_path)
    # The header is read only inside the folders a preview may come from (a row
    # can point elsewhere: a folder swapped for a symlink, a changed config).
    readable = is_image(path) and inside_roots(ctx, row.current_path)
    info = thumbnail.describe(path) if readable else {}
    return {
        "id": row.id,
        "name": path.name,
        "path": row.current_path,
        "size": row.size,
        "status": row.status,
        "capture_time": row.capture_time,
        "distance": distance,
        "image": is_image(path),
        **info,
    }


def groups_context(ctx: Any, after: int) -> dict[str, Any]:
    groups, next_after = review.near_groups(GROUPS_PER_PAGE, after)
    return {
        "groups": [
            {
                "id": g.file_id,
                "base": (
                    member(ctx, g.file)
                    if g.file
                    else {"id": g.file_id, "name": f"file #{g.file_id} (gone)"}
                ),
                "members": [member(ctx, m, m.near_distance) for m in g.members],
            }
            for g in groups
        ],
        "next_after": next_after,
        "after": after,
    }


async def groups_fragment(request: Request) -> HTMLResponse:
    after = int_param(request, "after", 0, 0, 2**62)
    return render(
        "fragments/groups.html",
        **await threaded(groups_context, state(request).ctx, after),
    )


def listing(query: Any, after: int) -> tuple[list[File], int | None]:
    rows = list(query.where(File.id > after).order_by(File.id).limit(PAGE_SIZE + 1))
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, rows[-1].id if more and rows else None


def row_view(row: File) -> dict[str, Any]:
    path = Path(row.current_path)
    return {
        "id": row.id,
        "name": path.name,
        "path": row.current_path,
        "size": row.size,
        "status": row.status,
        "error": row.error,
        "attempts": row.attempts,
        "stage": row.error_stage,
        "next_retry_at": row.next_retry_at,
        "capture_time": row.capture_time,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "image": is_image(path),
    }


def _page(
    template: str, target: str, base: str, query: Any, after: int, params: str = ""
) -> HTMLResponse:
    rows, next_after = listing(query, after)
    sep = "&" if params else ""
    return render(
        template,
        rows=[row_view(r) for r in rows],
        after=after,
        target=target,
        first_url=f"{base}?{params}",
        self_url=f"{base}?{params}{sep}after={after}" if after else f"{base}?{params}",
        next_url=f"{base}?{params}{sep}after={next_after}" if next_after else None,
    )


def status_list(name: str, *statuses: FileStatus) -> Any:
    """The handler of one list of the problems page: files in `statuses`, by id.

    `name` is the fragment's template, its htmx target and the last part of its URL.
    """

    async def fragment(request: Request) -> HTMLResponse:
        after = int_param(request, "after", 0, 0, 2**62)
        query = File.select().where(File.status.in_(statuses))
        return await threaded(
            _page,
            f"fragments/{name}.html",
            name,
            f"/dashboard/fragments/{name}",
            query,
            after,
        )

    return fragment


errors_fragment = status_list("errors", FileStatus.ERROR)
skipped_fragment = status_list("skipped", FileStatus.SKIPPED)
library_fragment = status_list("library", FileStatus.MISSING, FileStatus.CORRUPT)


def _day(request: Request, name: str) -> date | None:
    value = request.query_params.get(name, "")
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"{name}: not a date YYYY-MM-DD (got {value!r})") from None


async def files_fragment(request: Request) -> HTMLResponse:
    after = int_param(request, "after", 0, 0, 2**62)
    q = request.query_params.get("q", "").strip()[:200]
    status = request.query_params.get("status", "").upper()
    if status and status not in FILE_STATES:
        raise ApiError(400, f"status: must be one of {', '.join(FILE_STATES)}")
    since, until = _day(request, "since"), _day(request, "until")
    query = File.select()
    if q:
        # instr, not LIKE: a % or _ in the name is matched literally.
        query = query.where(fn.instr(fn.lower(File.current_path), q.lower()) > 0)
    if status:
        query = query.where(File.status == status)
    if since:
        query = query.where(
            File.capture_time >= datetime.combine(since, datetime.min.time())
        )
    if until:
        query = query.where(
            File.capture_time < datetime.combine(until, datetime.max.time())
        )
    params = urlencode(
        {
            k: v
            for k, v in (
                ("q", q),
                ("status", status),
                ("since", since.isoformat() if since else ""),
                ("until", until.isoformat() if until else ""),
            )
            if v
        }
    )
    return await threaded(
        _page,
        "fragments/files.html",
        "files",
        "/dashboard/fragments/files",
        query,
        after,
        params,
    )
