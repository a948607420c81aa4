"""GET /api/dashboard (numbers) and GET /dashboard (the HTML page)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline.dashboard import dashboard
from web.errors import ok
from web.routes.common import state, threaded

WEB = Path(__file__).resolve().parents[1]


async def data(request: Request) -> JSONResponse:
    ctx = state(request).ctx
    return ok(await threaded(dashboard, ctx.clock(), ctx.settings.batch))


async def page(request: Request) -> HTMLResponse:
    html = (WEB / "templates" / "dashboard.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{version}}", state(request).version))


routes = [
    Route("/api/dashboard", data, methods=["GET"]),
    Route("/dashboard", page, methods=["GET"]),
    Mount("/static", app=StaticFiles(directory=str(WEB / "static")), name="static"),
]
