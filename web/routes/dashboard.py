"""GET /api/dashboard (numbers), the dashboard pages and the HTML fragments htmx swaps in.

The pages themselves hold no data (they load without an API key, like the static
assets); every number arrives in a fragment under /dashboard/fragments/, which needs
the key like any API route.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

from peewee import fn
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline import charts, jobs, review, thumbnail
from pipeline.dashboard import dashboard
from pipeline.hashing import is_image
from pipeline.models import Batch, BatchStatus, File, FileStatus, Job
from web.errors import ApiError, ok
from web.pages import FILE_STATES, render
from web.routes.common import int_param, state, threaded
from web.routes.review import inside_roots

NEEDS_ATTENTION = (FileStatus.ERROR, FileStatus.MISSING, FileStatus.CORRUPT)

WEB = Path(__file__).resolve().parents[1]
PAGE_SIZE = 50
GROUPS_PER_PAGE = 10
CHART_TTL = 60.0
ACTIONS = (
    ("dedup", "/api/dedup/start", "Scan inbox", None),
    ("batch", "/api/batch/create", "Create batch", None),
    ("sync", "/api/sync/start", "Start sync", None),
    ("sort", "/api/sort/start", "Sort now", None),
    ("cleanup", "/api/cleanup/run", "Cleanup dry run", '{"dry_run": true}'),
)
FOLDERS = (
    ("inbox", "Inbox"),
    ("batch_dir", "Batches"),
    ("sync_dir", "Syncthing folder"),
    ("sorted_dir", "Library"),
    ("duplicates_dir", "Duplicates"),
)


async def data(request: Request) -> JSONResponse:
    ctx = state(request).ctx
    return ok(await threaded(dashboard, ctx.clock(), ctx.settings.batch))


# pages ---------------------------------------------------------------------------


def page(name: str, title: str, template: str, **extra: Any) -> Route:
    async def show(request: Request) -> HTMLResponse:
        return render(
            template,
            page=name,
            title=title,
            version=state(request).version,
            actions=ACTIONS,
            statuses=list(FILE_STATES.items()),
            **extra,
        )

    path = "/dashboard" if name == "overview" else f"/dashboard/{name}"
    return Route(path, show, methods=["GET"], name=f"page-{name}")


# fragments -----------------------------------------------------------------------


async def health_fragment(request: Request) -> HTMLResponse:
    from web.routes.health import database_state

    app = state(request)
    components = dict(app.components())
    components["database"] = await threaded(database_state)
    return render(
        "fragments/health.html",
        components=sorted(components.items()),
        uptime=time.monotonic() - app.started,
        auth=app.auth_enabled(),
    )


def _in_batches(statuses: tuple[str, ...]) -> int:
    total = (
        Batch.select(fn.COALESCE(fn.SUM(Batch.file_count), 0))
        .where(Batch.status.in_(statuses))
        .scalar()
    )
    return int(total or 0)


def status_context(ctx: Any) -> dict[str, Any]:
    d = dashboard(ctx.clock())
    by = d["files"]["by_status"]
    attention = sum(by.get(s, 0) for s in NEEDS_ATTENTION)
    waiting = d.get("waiting") or {
        "files": by.get(FileStatus.UNIQUE, 0),
        "bytes": None,
        "next_batch_at": None,
    }
    storage = d["storage"]
    headline = [
        (
            "library",
            "in the library",
            by.get(FileStatus.SORTED, 0),
            "sorted by date",
            "ok",
            None,
        ),
        (
            "waiting",
            "waiting for a batch",
            waiting["files"],
            "accepted, in the inbox",
            "info",
            None,
        ),
        (
            "duplicates",
            "duplicates set aside",
            by.get(FileStatus.DUPLICATE, 0),
            "exact copies, in the duplicates folder",
            "muted",
            None,
        ),
        (
            "attention",
            "need attention",
            attention,
            "see Problems" if attention else "nothing is stuck",
            "bad" if attention else "ok",
            "/dashboard/problems" if attention else None,
        ),
    ]
    inbox_files = sum(
        by.get(s, 0) for s in (FileStatus.NEW, FileStatus.HASHED, FileStatus.UNIQUE)
    )
    flow = [
        {
            "key": "inbox",
            "label": "Inbox",
            "files": inbox_files,
            "bytes": storage["inbox"],
            "detail": "arriving, checked or waiting",
        },
        {
            "key": "batches",
            "label": "Batches",
            "files": _in_batches((BatchStatus.CREATED,)),
            "bytes": storage["batch_dir"],
            "detail": "built, not yet in Syncthing",
        },
        {
            "key": "syncthing",
            "label": "Syncthing",
            "files": _in_batches((BatchStatus.SYNCING, BatchStatus.SYNCED)),
            "bytes": storage["sync_dir"],
            "detail": "going to the remote devices",
        },
        {
            "key": "library",
            "label": "Library",
            "files": by.get(FileStatus.SORTED, 0),
            "bytes": storage["sorted_dir"],
            "detail": "sorted by date",
        },
    ]
    whole = sum(s["files"] for s in flow) or 1
    for stage in flow:
        stage["percent"] = round(100.0 * stage["files"] / whole, 1)
    batch = ctx.settings.batch
    return {
        "d": d,
        "headline": headline,
        "flow": flow,
        "waiting": waiting,
        "auto_create": batch.auto_create,
        "max_size": f"{batch.max_size_gb:g} GB",
        "max_age": f"{batch.max_age_seconds // 60:g} min",
    }


async def status_fragment(request: Request) -> HTMLResponse:
    return render(
        "fragments/status.html", **await threaded(status_context, state(request).ctx)
    )


def activity_context(ctx: Any) -> dict[str, Any]:
    latest_ids = Job.select(fn.MAX(Job.id)).group_by(Job.kind)
    recent = Job.select().where(Job.id.in_(latest_ids)).order_by(Job.kind)
    return {
        "jobs": [jobs.job_dict(j) for j in charts.active_jobs()],
        "recent": [jobs.job_dict(j) for j in recent],
        "batches": [charts.batch_row(b) for b in charts.batches_in_flight()],
        "syncthing": ctx.settings.syncthing.enabled,
    }


async def activity_fragment(request: Request) -> HTMLResponse:
    return render(
        "fragments/activity.html",
        **await threaded(activity_context, state(request).ctx),
    )


def charts_context(ctx: Any, span: str) -> dict[str, Any]:
    now = ctx.clock()
    intake = charts.intake(now, span)
    growth = charts.library_growth(now)
    storage = dashboard(now)["storage"]
    return {
        "span": span,
        "intake": {
            "type": "bar",
            "stacked": True,
            "labels": intake["labels"],
            "datasets": [
                {"label": name, "data": values}
                for name, values in intake["series"].items()
            ],
        },
        "growth": {
            "type": "line",
            "labels": growth["labels"],
            "datasets": [{"label": "files in the library", "data": growth["files"]}],
        },
        "storage": {
            "type": "doughnut",
            "labels": [label for _, label in FOLDERS],
            "datasets": [
                {"label": "bytes", "data": [storage[key] for key, _ in FOLDERS]}
            ],
        },
        "storage_rows": [(key, label, storage[key]) for key, label in FOLDERS],
    }


async def charts_fragment(request: Request) -> HTMLResponse:
    span = request.query_params.get("span", "hour")
    if span not in ("hour", "day"):
        raise ApiError(400, f"span: must be hour or day (got {span!r})")
    app = state(request)
    # Charts change slowly and read more rows than the counters: a minute's cache.
    cache: dict[str, tuple[float, dict[str, Any]]] = app.__dict__.setdefault(
        "_chart_cache", {}
    )
    hit = cache.get(span)
    if hit is None or time.monotonic() - hit[0] > CHART_TTL:
        hit = (time.monotonic(), await threaded(charts_context, app.ctx, span))
        cache[span] = hit
    return render("fragments/charts.html", **hit[1])


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


async def errors_fragment(request: Request) -> HTMLResponse:
    after = int_param(request, "after", 0, 0, 2**62)
    query = File.select().where(File.status == FileStatus.ERROR)
    return await threaded(
        _page,
        "fragments/errors.html",
        "errors",
        "/dashboard/fragments/errors",
        query,
        after,
    )


async def skipped_fragment(request: Request) -> HTMLResponse:
    after = int_param(request, "after", 0, 0, 2**62)
    query = File.select().where(File.status == FileStatus.SKIPPED)
    return await threaded(
        _page,
        "fragments/skipped.html",
        "skipped",
        "/dashboard/fragments/skipped",
        query,
        after,
    )


async def library_fragment(request: Request) -> HTMLResponse:
    after = int_param(request, "after", 0, 0, 2**62)
    query = File.select().where(
        File.status.in_((FileStatus.MISSING, FileStatus.CORRUPT))
    )
    return await threaded(
        _page,
        "fragments/library.html",
        "library",
        "/dashboard/fragments/library",
        query,
        after,
    )


def _day(request: Request, name: str) -> date | None:
    value = request.query_params.get(name, "")
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"{name}: not a date YYYY-MM-DD (got {value!r})") from None


async def files_fragment(request: Request) -> HTMLResponse:
    from urllib.parse import urlencode

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


routes = [
    Route("/api/dashboard", data, methods=["GET"]),
    page("overview", "Overview", "overview.html", charts=True),
    page("review", "Review near-duplicates", "review.html"),
    page("problems", "Problems", "problems.html"),
    page("files", "Files", "files.html"),
    Route("/dashboard/fragments/health", health_fragment, methods=["GET"]),
    Route("/dashboard/fragments/status", status_fragment, methods=["GET"]),
    Route("/dashboard/fragments/activity", activity_fragment, methods=["GET"]),
    Route("/dashboard/fragments/charts", charts_fragment, methods=["GET"]),
    Route("/dashboard/fragments/groups", groups_fragment, methods=["GET"]),
    Route("/dashboard/fragments/errors", errors_fragment, methods=["GET"]),
    Route("/dashboard/fragments/skipped", skipped_fragment, methods=["GET"]),
    Route("/dashboard/fragments/library", library_fragment, methods=["GET"]),
    Route("/dashboard/fragments/files", files_fragment, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=str(WEB / "static")), name="static"),
]
