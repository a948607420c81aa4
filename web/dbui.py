"""/dbui: sqlite-web, read-only, behind its own password (mounted only when enabled).

sqlite-web is a Flask app built to be run on its own; used as a library it needs four
things done for it:

- its session is signed with a public default key unless told otherwise, so a
  forged `{"authorized": true}` cookie would open it: a random key per start;
- its password check is a plain `==` with no limit: the login is checked here first,
  in constant time and through the API's wrong-key limiter;
- `read_only` only opens the main file read-only: `ATTACH` and `VACUUM INTO` still
  create and write files anywhere the daemon may write. Every connection gets
  `SQLITE_LIMIT_ATTACHED = 0` and an authorizer that allows reading only, so
  SQLite itself refuses, whatever the UI lets through;
- its session cookie is `SameSite=Strict` and scoped to /dbui, so another site
  cannot make the owner's browser use it.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlencode

from a2wsgi import WSGIMiddleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.auth import FailureLimiter, peer_key
from web.errors import error

MAX_LOGIN_BODY = 64 * 1024
# Read-only pragmas that take an argument (a table or index name).
READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
    }
)
# Pragmas that act even without an argument.
ACTING_PRAGMAS = frozenset({"optimize", "wal_checkpoint", "incremental_vacuum"})
ALLOWED_ACTIONS = frozenset(
    {
        sqlite3.SQLITE_READ,
        sqlite3.SQLITE_SELECT,
        sqlite3.SQLITE_FUNCTION,
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_RECURSIVE,
    }
)
DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit"})


def read_only_authorizer(
    action: int, arg1: str | None, arg2: str | None, db: str | None, source: str | None
) -> int:
    """Allow reading; deny every write, schema change, ATTACH and acting pragma."""
    if action == sqlite3.SQLITE_PRAGMA:
        name = (arg1 or "").lower()
        if name in ACTING_PRAGMAS or (arg2 is not None and name not in READ_PRAGMAS):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK if action in ALLOWED_ACTIONS else sqlite3.SQLITE_DENY


def guard_connection(conn: sqlite3.Connection) -> None:
    """Make `conn` read-only in SQLite itself: no attached files, no writes."""
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    conn.set_authorizer(read_only_authorizer)


def _guard_database(db: Any) -> None:
    """sqlite-web's startup hook: every connection peewee opens is guarded."""
    connect = db._connect

    def guarded() -> sqlite3.Connection:
        conn = connect()
        guard_connection(conn)
        return conn

    db._connect = guarded


class LoginGuard:
    """POST /dbui/login/ checked here, constant-time and rate-limited, before sqlite-web.

    A wrong password reaches sqlite-web emptied, so it shows its own "incorrect"
    page without ever comparing the guess against the real password.
    """

    def __init__(self, app: ASGIApp, password: str, limiter: FailureLimiter):
        self.app = app
        self.password = password.encode()
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_login = scope["type"] == "http" and scope["method"] == "POST"
        if not is_login or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await error(413, "request body too large")(scope, receive, send)
            return
        client = peer_key(scope)
        guess = _form_password(body)
        if hmac.compare_digest(guess.encode(), self.password):
            await self.app(scope, _replay(body), send)
            return
        if self.limiter.blocked(client):
            await error(429, "too many wrong passwords; wait a minute")(
                scope, receive, send
            )
            return
        self.limiter.failed(client)
        emptied = urlencode({"password": ""}).encode()
        headers = [
            (k, v)
            for k, v in scope["headers"]
            if k not in (b"content-length", b"content-type")
        ]
        headers.append((b"content-length", str(len(emptied)).encode()))
        headers.append((b"content-type", b"application/x-www-form-urlencoded"))
        await self.app({**scope, "headers": headers}, _replay(emptied), send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_LOGIN_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _form_password(body: bytes) -> str:
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return ""
    values = form.get("password") or [""]
    return values[0]


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def dbui_mount(
    db_path: Path, password: str, limiter: FailureLimiter | None = None
) -> Mount:
    """A Mount serving sqlite-web for `db_path` read-only at /dbui."""
    from sqlite_web import sqlite_web

    if not password:
        raise ValueError("dbui.password: must be set when dbui.enabled is true")
    app = sqlite_web.app
    sqlite_web.datasets.clear()  # one database per process: this daemon's
    # Its login check is registered once per process (Flask refuses setup calls
    # after a first request); a later app (tests) only changes the password.
    first = "check_password" not in {
        f.__name__ for f in app.before_request_funcs.get(None, [])
    }
    sqlite_web.initialize_app(
        [str(db_path)],
        read_only=True,
        password=password if first else None,
        startup_hook=_guard_database,
    )
    app.config["PASSWORD"] = password
    app.secret_key = secrets.token_hex(32)
    app.config.update(
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_PATH="/dbui",
    )
    # a2wsgi types its ASGI side with its own TypedDicts; it is an ASGI app all the same.
    wsgi = cast(ASGIApp, WSGIMiddleware(app))
    guard = LoginGuard(wsgi, password, limiter or FailureLimiter())
    return Mount("/dbui", app=guard)
