"""/dbui: sqlite-web, read-only, behind its own password (mounted only when enabled)."""

from __future__ import annotations

from pathlib import Path

from a2wsgi import WSGIMiddleware
from starlette.routing import Mount


def dbui_mount(db_path: Path, password: str) -> Mount:
    """A Mount serving sqlite-web for `db_path` read-only at /dbui."""
    from sqlite_web import sqlite_web

    if not password:
        raise ValueError("dbui.password: must be set when dbui.enabled is true")
    sqlite_web.initialize_app([str(db_path)], read_only=True, password=password)
    return Mount("/dbui", app=WSGIMiddleware(sqlite_web.app))
