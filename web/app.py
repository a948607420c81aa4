"""The Starlette application: routes, error envelope, auth."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from web import errors
from web.auth import ApiKeyMiddleware
from web.routes import health
from web.state import AppState


def all_routes() -> list[BaseRoute]:
    """Every route, in one place (the OpenAPI test checks each is documented)."""
    return [*health.routes]


def create_app(state: AppState, dbui: Any = None) -> Starlette:
    """The app for `state`; `dbui` (settings with enabled/password) mounts sqlite-web."""
    app = Starlette(
        routes=all_routes(),
        exception_handlers=errors.HANDLERS,
        middleware=[Middleware(ApiKeyMiddleware, enabled=state.auth_enabled, key=state.api_key)],
    )
    app.state.media = state
    return app
