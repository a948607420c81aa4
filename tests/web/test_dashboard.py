"""GET /dashboard, its static assets and GET /api/dashboard through a real uvicorn server."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from pipeline import __version__
from pipeline.models import Batch, BatchStatus, FileStatus, utcnow
from web.app import all_routes, create_app

sys.path.insert(0, str(Path(__file__).parent))
from live import serve_app  # noqa: E402

from tests.conftest import add_file

KEY = "k" * 32
HOSTILE = "<img src=x onerror=alert(1)>.jpg"
STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
}
# Every endpoint the page talks to (SPEC §6); the script must use exactly these.
PAGE_GETS = {
    "/health",
    "/api/dashboard",
    "/api/sync/status",
    "/api/dedup/status",
    "/api/sort/status",
}
PAGE_POSTS = {
    "/api/dedup/start",
    "/api/batch/create",
    "/api/sync/start",
    "/api/sort/start",
    "/api/cleanup/run",
}


class AssetLinks(HTMLParser):
    """Every src/href attribute value of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]


@pytest.fixture
def live(
    service: Callable[..., Any],
) -> Iterator[Callable[..., tuple[Any, httpx.Client]]]:
    """Factory: (service overrides) -> (service, httpx client on a live server for it)."""
    with ExitStack() as stack:

        def make(**overrides: Any) -> tuple[Any, httpx.Client]:
            svc = service(**overrides)
            url = stack.enter_context(serve_app(create_app(svc.app_state())))
            return svc, stack.enter_context(httpx.Client(base_url=url, timeout=10))

        yield make


def add_batch(svc: Any, name: str, status: str) -> int:
    return svc.ctx.writer.call(lambda: Batch.create(name=name, status=status).id)


def test_page_has_the_version_and_only_local_assets(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    _, http = live()
    page = http.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'<span id="version">{__version__}</span>' in page.text
    assert "{{" not in page.text

    parser = AssetLinks()
    parser.feed(page.text)
    assert sorted(parser.links) == ["/static/dashboard.css", "/static/dashboard.js"]
    assert "http://" not in page.text and "https://" not in page.text
    for link in parser.links:
        asset = http.get(link)
        assert asset.status_code == 200, link
        kind = asset.headers["content-type"].split(";")[0]
        assert kind in CONTENT_TYPES[Path(link).suffix], (link, kind)
        assert asset.content == (STATIC / Path(link).name).read_bytes()

    css = (STATIC / "dashboard.css").read_text()
    assert (
        "@import" not in css and "url(" not in css
    )  # no fonts or images from anywhere


def test_script_talks_to_existing_routes_and_never_parses_html() -> None:
    script = (STATIC / "dashboard.js").read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ):
        assert sink not in script, sink
    paths = set(re.findall(r'"(/(?:api/[a-z_/]+|health))"', script))
    assert paths == PAGE_GETS | PAGE_POSTS
    methods = {r.path: r.methods or set() for r in all_routes() if isinstance(r, Route)}
    for path in PAGE_GETS:
        assert "GET" in methods[path], path
    for path in PAGE_POSTS:
        assert "POST" in methods[path], path


def test_api_dashboard_has_the_spec_keys_and_counts_the_rows(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    svc, http = live()
    # A fixed hour well inside the 24-hour window, so an hour boundary cannot move rows.
    when = (utcnow() - timedelta(hours=3)).replace(minute=30)
    add_file(svc, "new.jpg", FileStatus.NEW, 10, created_at=when)
    add_file(svc, "hashed.jpg", FileStatus.HASHED, 20, created_at=when)
    first = add_file(svc, "u1.jpg", FileStatus.UNIQUE, 100, created_at=when)
    add_file(svc, "u2.jpg", FileStatus.UNIQUE, 100, created_at=when)
    add_file(
        svc,
        "u1_small.jpg",
        FileStatus.UNIQUE,
        300,
        created_at=when,
        near_duplicate_of=first,
        near_distance=3,
    )
    add_file(
        svc, "dup.jpg", FileStatus.DUPLICATE, 1000, created_at=when, duplicate_of=first
    )
    bad = add_file(
        svc, HOSTILE, FileStatus.ERROR, 5, created_at=when, error="hash: unreadable"
    )
    created = add_batch(svc, "batch_000001", BatchStatus.CREATED)
    syncing = add_batch(svc, "batch_000002", BatchStatus.SYNCING)
    synced = add_batch(svc, "batch_000003", BatchStatus.SYNCED)
    add_batch(svc, "batch_000004", BatchStatus.SORTED)
    add_file(svc, "b1.jpg", FileStatus.BATCHED, 400, created_at=when, batch=created)
    add_file(svc, "b2.jpg", FileStatus.BATCHED, 500, created_at=when, batch=syncing)
    add_file(svc, "s1.jpg", FileStatus.SYNCED, 600, created_at=when, batch=synced)
    add_file(svc, "sorted.jpg", FileStatus.SORTED, 7000, created_at=when)
    add_file(
        svc, "old.jpg", FileStatus.SORTED, 50, created_at=utcnow() - timedelta(days=2)
    )

    body = http.get("/api/dashboard").json()
    assert body["status"] == "ok"
    data = body["data"]
    assert set(data) == {
        "files",
        "unique",
        "duplicates",
        "near_duplicates",
        "batches",
        "storage",
        "recent_errors",
        "files_per_hour",
        "waiting",
        "capture_sources",
        "mtime_dated",
        "last_verify",
    }
    assert data["last_verify"] is None  # never verified
    # auto_create is off in the test config: no batch is due by itself.
    assert data["waiting"] == {
        "files": 3,
        "bytes": 500,
        "next_batch_at": None,
        "max_bytes": 10 * 1024**3,
    }
    assert (data["capture_sources"], data["mtime_dated"]) == ({}, 0)
    assert data["files"] == {
        "total": 12,
        "by_status": {
            "NEW": 1,
            "HASHED": 1,
            "UNIQUE": 3,
            "DUPLICATE": 1,
            "BATCHED": 2,
            "SYNCED": 1,
            "SORTED": 2,
            "ERROR": 1,
            "SKIPPED": 0,
            "MISSING": 0,
            "CORRUPT": 0,
        },
    }
    assert (data["unique"], data["duplicates"], data["near_duplicates"]) == (8, 1, 1)
    assert data["batches"] == {
        "total": 4,
        "by_status": {"CREATED": 1, "SYNCING": 1, "SYNCED": 1, "SORTED": 1, "ERROR": 0},
    }
    assert data["storage"] == {
        "inbox": 10 + 20 + 100 + 100 + 300 + 5,
        "duplicates_dir": 1000,
        "batch_dir": 400,
        "sync_dir": 500 + 600,
        "sorted_dir": 7000 + 50,
    }

    [error] = data["recent_errors"]
    assert set(error) == {"file_id", "path", "error", "at"}
    assert error["file_id"] == bad
    assert error["path"] == str(Path(svc.settings.paths.inbox) / HOSTILE)
    assert error["error"] == "hash: unreadable"
    datetime.fromisoformat(error["at"])

    hours = data["files_per_hour"]
    assert len(hours) == 24 and all(set(h) == {"hour", "count"} for h in hours)
    starts = [datetime.fromisoformat(h["hour"]) for h in hours]
    assert all(
        b - a == timedelta(hours=1) for a, b in zip(starts, starts[1:], strict=False)
    )
    by_hour = {h["hour"]: h["count"] for h in hours}
    assert by_hour[when.strftime("%Y-%m-%dT%H:00:00Z")] == 11
    assert sum(by_hour.values()) == 11  # the two-day-old file is outside the window


def test_with_auth_the_page_loads_but_its_api_calls_need_the_key(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    _, http = live(auth={"enabled": True, "api_key": KEY})
    # The page and its assets hold no data; without them no browser could ask for the key.
    assert http.get("/dashboard").status_code == 200
    assert http.get("/static/dashboard.js").status_code == 200
    assert http.get("/static/dashboard.css").status_code == 200
    assert http.get("/health").status_code == 200

    for path in sorted(PAGE_GETS - {"/health"}):
        refused = http.get(path)
        assert refused.status_code == 401, path
        body = refused.json()
        assert body["status"] == "error" and body["code"] == "UNAUTHORIZED"
        assert KEY not in body["message"]
        assert http.get(path, headers={"X-API-Key": "wrong" + KEY}).status_code == 401
        answered = http.get(path, headers={"X-API-Key": KEY})
        assert answered.status_code == 200, path
        assert answered.json()["status"] == "ok"
    for path in sorted(PAGE_POSTS):
        assert http.post(path, json={}).status_code == 401, path
