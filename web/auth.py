"""API-key authentication as ASGI middleware: X-API-Key or Authorization: Bearer."""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections import deque
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from web.errors import error

# The dashboard pages and their assets hold no data (the version is public via
# /health): a browser cannot send a header when it opens a page, so they load without
# a key, and the fragments and API calls the page makes need one.
OPEN_PATHS = (
    "/health",
    "/dashboard",
    "/dashboard/review",
    "/dashboard/problems",
    "/dashboard/files",
)
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


def client_key(peer: str) -> str:
    """The budget a TCP peer draws on: one for all of loopback, a /24, a /64.

    Counting each address would give a local user 16 million budgets (127.0.0.0/8)
    and anyone on an IPv6 network a /64 of them.
    """
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return peer
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "loopback"
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def peer_key(scope: Scope) -> str:
    """The limiter key of a request's TCP peer (see client_key)."""
    return client_key((scope.get("client") or ("?", 0))[0])


class FailureLimiter:
    """Counts failed keys per client key; past `limit` within `window` s it waits."""

    def __init__(
        self,
        limit: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def blocked(self, client: str) -> bool:
        recent = self._recent(client)
        return recent is not None and len(recent) >= self.limit

    def failed(self, client: str) -> None:
        self._failures.setdefault(client, deque()).append(self.clock())
        if len(self._failures) > 10_000:  # bounded memory under a spray of addresses
            self._failures.pop(next(iter(self._failures)))

    def _recent(self, client: str) -> deque[float] | None:
        times = self._failures.get(client)
        while times and self.clock() - times[0] > self.window:
            times.popleft()
        return times


class ApiKeyMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        enabled: Callable[[], bool],
        key: Callable[[], str],
        limiter: FailureLimiter | None = None,
    ):
        self.app = app
        self.enabled = enabled
        self.key = key
        self.limiter = limiter or FailureLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._needs_key(scope["path"]):
            await self.app(scope, receive, send)
            return
        # The TCP peer: uvicorn rewrites it from X-Forwarded-For only for the
        # configured server.trusted_proxies.
        client = peer_key(scope)
        presented = presented_key(dict(scope["headers"]))
        # The right key is served even while its address is blocked: someone
        # guessing from the same address (a NAT, a proxy) cannot lock the owner out,
        # and a 32-character key is not found by guessing.
        if key_matches(presented, self.key()):
            await self.app(scope, receive, send)
            return
        if self.limiter.blocked(client):
            response = error(429, "too many wrong API keys; wait a minute")
        else:
            if presented:  # a wrong guess, not a page that has not asked yet
                self.limiter.failed(client)
            response = error(
                401, "missing or invalid API key (X-API-Key or Authorization: Bearer)"
            )
        await response(scope, receive, send)

    def _needs_key(self, path: str) -> bool:
        if not self.enabled() or path in OPEN_PATHS:
            return False
        return not any(path == p or path.startswith(p + "/") for p in OPEN_PREFIXES)
