"""POST /api/cleanup/run: run the cleanup now (optionally as a dry run)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline.cleanup import actions_json, run_cleanup
from web.errors import ok
from web.routes.common import Body, body, state, threaded


class CleanupRun(Body):
    dry_run: bool = False


async def run(request: Request) -> JSONResponse:
    params = await body(request, CleanupRun)
    actions = await threaded(run_cleanup, state(request).ctx, params.dry_run)
    return ok({"dry_run": params.dry_run, "actions": actions_json(actions)})


routes = [Route("/api/cleanup/run", run, methods=["POST"])]
