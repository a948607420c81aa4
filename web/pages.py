"""Jinja2 for the dashboard: one environment, autoescaped, with display filters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse

from pipeline.states import BatchStatus, FileStatus

TEMPLATES = Path(__file__).resolve().parent / "templates"

NAV = (
    ("/dashboard", "overview", "Overview"),
    ("/dashboard/review", "review", "Review near-duplicates"),
    ("/dashboard/problems", "problems", "Problems"),
    ("/dashboard/files", "files", "Files"),
)
# What a status means to the owner, in the words the pages use.
FILE_STATES: dict[str, str] = {
    FileStatus.NEW: "arriving",
    FileStatus.HASHED: "being checked",
    FileStatus.UNIQUE: "waiting for a batch",
    FileStatus.DUPLICATE: "duplicate, set aside",
    FileStatus.BATCHED: "in a batch",
    FileStatus.SYNCED: "on the remote devices",
    FileStatus.SORTED: "in the library",
    FileStatus.ERROR: "needs attention",
    FileStatus.SKIPPED: "skipped (not media)",
    FileStatus.MISSING: "missing from the library",
    FileStatus.CORRUPT: "changed in the library",
}
BATCH_STATES: dict[str, str] = {
    BatchStatus.CREATED: "built, waiting for Syncthing",
    BatchStatus.SYNCING: "syncing",
    BatchStatus.SYNCED: "on every device, to be sorted",
    BatchStatus.SORTED: "sorted",
    BatchStatus.ERROR: "failed",
}


def human_bytes(value: Any) -> str:
    """1536 -> '1.50 KiB' (binary units, as `du -h`)."""
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} TiB"


def number(value: Any) -> str:
    return f"{int(value or 0):,}"


def when(value: Any) -> str:
    """A stored UTC time (datetime or ISO string) as 'YYYY-MM-DD HH:MM UTC'."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.removesuffix("Z"))
    return value.strftime("%Y-%m-%d %H:%M UTC")


def duration(seconds: Any) -> str:
    total = int(seconds or 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"


def pill(state: str) -> str:
    """CSS class of a component state pill."""
    if state in ("ok", "running", "inotify", "polling"):
        return "pill-ok"
    if state in ("disabled", "off", "unknown"):
        return "pill-off"
    return "pill-bad"


ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(("html",), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.filters.update(
    bytes=human_bytes,
    num=number,
    when=when,
    duration=duration,
    pill=pill,
    file_state=lambda s: FILE_STATES.get(s, str(s).lower()),
    batch_state=lambda s: BATCH_STATES.get(s, str(s).lower()),
)


def render(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A template rendered to an HTML response (never cached: the data is live)."""
    html = ENV.get_template(name).render(nav=NAV, **context)
    return HTMLResponse(html, status_code, headers={"Cache-Control": "no-store"})
