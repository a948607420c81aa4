"""The Starlette application: routes, error envelope, auth."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from web import errors, openapi
from web.auth import ApiKeyMiddleware, FailureLimiter
from web.guard import GuardMiddleware
from web.routes import (
    batches,
    cleanup,
    config,
    dashboard,
    dedup,
    files,
    health,
    jobs,
    library,
    metrics,
    notify,
    retry,
    review,
    sort,
    sync,
)
from web.state import AppState


def all_routes() -> list[BaseRoute]:
    """Every route, in one place (the OpenAPI test checks each is documented)."""
    return [
        *health.routes,
        *config.routes,
        *dedup.routes,
        *review.routes,
        *retry.routes,
        *files.routes,
        *batches.routes,
        *sync.routes,
        *sort.routes,
        *cleanup.routes,
        *library.routes,
        *jobs.routes,
        *dashboard.routes,
        *metrics.routes,
        *notify.routes,
        *openapi.routes,
    ]


def create_app(state: AppState, dbui: Any = None) -> Starlette:
    """The app for `state`; `dbui` (settings with enabled/password) mounts sqlite-web."""
    routes = all_routes()
    # One count of wrong guesses per client, for API keys and the /dbui password.
    limiter = FailureLimiter()
    if dbui is not None and dbui.enabled:
        from web.dbui import dbui_mount

        routes.append(
            dbui_mount(state.ctx.settings.database.path, dbui.password, limiter)
        )
    server = state.ctx.settings.server

    def allowed_hosts() -> list[str]:
        return [server.host, *getattr(server, "allowed_hosts", [])]

    app = Starlette(
        routes=routes,
        exception_handlers=errors.HANDLERS,
        # Outermost first: the guard answers refused Hosts and bodies (with its
        # headers) before the key is even looked at.
        middleware=[
            Middleware(GuardMiddleware, allowed_hosts=allowed_hosts),
            Middleware(
                ApiKeyMiddleware,
                enabled=state.auth_enabled,
                key=state.api_key,
                limiter=limiter,
            ),
        ],
    )
    app.state.media = state
    return app
