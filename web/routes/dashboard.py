"""GET /api/dashboard (numbers), the dashboard pages and the HTML fragments htmx swaps in.

The pages themselves hold no data (they load without an API key, like the static
assets); every number arrives in a fragment under /dashboard/fragments/, which needs
the key like any API route.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from peewee import fn
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline import charts, jobs, status
from pipeline.dashboard import dashboard
from pipeline.models import Batch, BatchStatus, FileStatus, Job
from web.errors import ApiError, ok
from web.pages import FILE_STATES, render
from web.routes.common import state, threaded
from web.routes.dashboard_lists import (
    errors_fragment,
    files_fragment,
    groups_fragment,
    library_fragment,
    skipped_fragment,
)

NEEDS_ATTENTION = (FileStatus.ERROR, FileStatus.MISSING, FileStatus.CORRUPT)


WEB = Path(__file__).resolve().parents[1]


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
    d = dashboard(ctx.clock(), ctx.settings.batch)
    by = d["files"]["by_status"]
    attention = sum(by.get(s, 0) for s in NEEDS_ATTENTION)
    waiting = d["waiting"]
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
    storage = status.storage_bytes()
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
