"""Request guards every route gets, auth or not: Host check, JSON bodies, headers.

A hostile page in the owner's browser can send requests to 127.0.0.1 (cross-site
form posts) or resolve its own name to it (DNS rebinding). The first arrive with a
form content type, the second with the attacker's name in `Host`; both are refused
here before any route runs. Every response carries headers that keep pages from
being framed, sniffed or running injected script.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import error
from web.headers import HEADER_NAMES, as_asgi, security_headers

# The dashboard: no inline script or style, nothing from another origin.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# sqlite-web's pages carry inline script and style; it is still never framed and
# talks to nothing but itself.
DBUI_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
# sqlite-web's own forms post form-encoded; it is read-only, has its own password
# and a SameSite=Strict session cookie.
FORM_PREFIXES = ("/dbui",)


def host_name(header: str) -> str:
    """The name in a Host header, lower-case, without port or IPv6 brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_loopback(name: str) -> bool:
    """True for localhost and any loopback address (127.0.0.0/8, ::1)."""
    if name.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def media_type(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for key, value in headers:
        if key == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


class GuardMiddleware:
    """Host allow-list (400), JSON-only bodies (415) and security headers."""

    def __init__(self, app: ASGIApp, allowed_hosts: Callable[[], Iterable[str]]):
        self.app = app
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        extra = _SECURITY[DBUI_CSP if _under(path, FORM_PREFIXES) else CSP]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in HEADER_NAMES
                ]
                headers += extra
                message = {**message, "headers": headers}
            await send(message)

        response = self._refusal(scope)
        if response is not None:
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = scope.get("headers", [])
        host = next((v.decode("latin-1") for k, v in headers if k == b"host"), "")
        name = host_name(host)
        if not self._host_allowed(name):
            shown = host[:100] if host else "(none)"
            return error(
                400,
                f"Host {shown!r} is not served; add it to server.allowed_hosts "
                "to reach the daemon by that name",
            )
        if scope["method"] in BODY_METHODS and not _under(scope["path"], FORM_PREFIXES):
            if media_type(headers) != "application/json":
                return error(
                    415,
                    f"{scope['method']} needs Content-Type: application/json",
                    "VALIDATION_ERROR",
                )
        return None

    def _host_allowed(self, name: str) -> bool:
        if not name:
            return False
        if is_loopback(name):
            return True
        return name in {h.strip("[]").lower() for h in self.allowed_hosts()}


# Built once: they go on every answer.
_SECURITY = {csp: as_asgi(security_headers(csp)) for csp in (CSP, DBUI_CSP)}


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)
