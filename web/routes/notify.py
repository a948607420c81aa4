"""POST /api/notify/test and GET /api/notify/history: the owner's notifications."""

from __future__ import annotations

from dataclasses import asdict

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from pipeline.alerts import Alerts
from web.errors import ApiError, ok
from web.pages import render
from web.routes.common import state, threaded


def _alerts(request: Request) -> Alerts:
    alerts = state(request).ctx.alerts
    if alerts is None:
        raise ApiError(409, "notifications are not running in this process")
    return alerts


async def notify_test(request: Request) -> JSONResponse:
    alerts = _alerts(request)
    if not state(request).ctx.settings.notify.urls:
        raise ApiError(409, "no notify.urls configured")
    outcomes = await threaded(alerts.test)
    results = [asdict(o) for o in outcomes]
    return ok({"delivered": all(o.delivered for o in outcomes), "results": results})


async def notify_history(request: Request) -> JSONResponse:
    return ok({"messages": _alerts(request).history()})


async def notifications_fragment(request: Request) -> HTMLResponse:
    app = state(request)
    alerts = app.ctx.alerts
    return render(
        "fragments/notifications.html",
        messages=alerts.history() if alerts is not None else [],
        configured=bool(app.ctx.settings.notify.urls),
    )


routes = [
    Route("/api/notify/test", notify_test, methods=["POST"]),
    Route("/api/notify/history", notify_history, methods=["GET"]),
    Route(
        "/dashboard/fragments/notifications", notifications_fragment, methods=["GET"]
    ),
]
