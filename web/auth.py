"""API-key authentication as ASGI middleware: X-API-Key or Authorization: Bearer."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from web.errors import error

# The dashboard page and its assets hold no data (the version is public via /health);
# a browser cannot send a header when it opens a page, so they load without a key and
# the API calls the page makes need one.
OPEN_PATHS = ("/health", "/dashboard")
OPEN_PREFIXES = ("/static", "/dbui")  # /dbui has its own password


def presented_key(headers: dict[bytes, bytes]) -> str:
    """The key a request carries, or ""."""
    if b"x-api-key" in headers:
        return headers[b"x-api-key"].decode("latin-1")
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""


def key_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison; an empty expected key never matches."""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


class ApiKeyMiddleware:
    def __init__(
        self, app: ASGIApp, enabled: Callable[[], bool], key: Callable[[], str]
    ):
        self.app = app
        self.enabled = enabled
        self.key = key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._needs_key(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if key_matches(presented_key(headers), self.key()):
            await self.app(scope, receive, send)
            return
        response = error(
            401, "missing or invalid API key (X-API-Key or Authorization: Bearer)"
        )
        await response(scope, receive, send)

    def _needs_key(self, path: str) -> bool:
        if not self.enabled() or path in OPEN_PATHS:
            return False
        return not any(path == p or path.startswith(p + "/") for p in OPEN_PREFIXES)
