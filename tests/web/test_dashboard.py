"""GET /dashboard, its static assets and GET /api/dashboard through a real uvicorn server."""

from __future__ import annotations

import html
import json
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

from tests.conftest import add_file, wait_until

KEY = "k" * 32
HOSTILE = "<img src=x onerror=alert(1)>.jpg"
STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
TEMPLATES = Path(__file__).resolve().parents[2] / "web" / "templates"
CONTENT_TYPES = {
    ".js": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
}
PAGES = ("/dashboard", "/dashboard/review", "/dashboard/problems", "/dashboard/files")
FRAGMENTS = (
    "notifications",
    "health",
    "status",
    "activity",
    "charts",
    "groups",
    "errors",
    "skipped",
    "library",
    "files",
)


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


class Tags(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def route_methods() -> dict[str, set[str]]:
    return {r.path: r.methods or set() for r in all_routes() if isinstance(r, Route)}


def known_path(path: str, method: str) -> bool:
    """Whether a concrete path (ids filled in) matches a route with `method`."""
    for pattern, methods in route_methods().items():
        rx = "^" + re.sub(r"\{[^}]+\}", "[^/]+", pattern) + "$"
        if re.match(rx, path) and method in methods:
            return True
    return False


@pytest.mark.parametrize("path", PAGES)
def test_pages_have_the_version_only_local_assets_and_nothing_inline(
    live: Callable[..., tuple[Any, httpx.Client]], path: str
) -> None:
    _, http = live()
    page = http.get(path)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f'<span id="version">{__version__}</span>' in page.text
    assert "{{" not in page.text and "{%" not in page.text
    assert "http://" not in page.text and "https://" not in page.text

    tags = tags_of(page.text)
    links = sorted(
        a.get("src") or a.get("href") or "" for t, a in tags if t in ("script", "link")
    )
    expected = [
        "/static/app.css",
        "/static/app.js",
        "/static/vendor/htmx.min.js",
        "/static/vendor/json-enc.js",
    ]
    if path == "/dashboard":
        expected.insert(2, "/static/vendor/chart.umd.min.js")
    assert links == expected
    for link in links:
        asset = http.get(link)
        assert asset.status_code == 200, link
        kind = asset.headers["content-type"].split(";")[0]
        assert kind in CONTENT_TYPES[Path(link).suffix], (link, kind)
        assert asset.content == (STATIC / link.removeprefix("/static/")).read_bytes()
    # CSP: no inline script or style, no style="" and no inline event handlers.
    for tag, attrs in tags:
        assert tag != "style", path
        assert tag != "script" or attrs.get("src"), path
        assert "style" not in attrs, (tag, attrs)
        assert not any(k.startswith("on") or k.startswith("hx-on") for k in attrs)
    # Every htmx request goes to an existing route.
    for _, attrs in tags:
        for attr, method in (("hx-get", "GET"), ("hx-post", "POST")):
            if attrs.get(attr):
                assert known_path(attrs[attr].split("?")[0], method), attrs[attr]


def test_stylesheet_loads_nothing_else_and_script_never_parses_html() -> None:
    css = (STATIC / "app.css").read_text()
    assert (
        "@import" not in css and "url(" not in css
    )  # no fonts or images from anywhere
    script = (STATIC / "app.js").read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ):
        assert sink not in script, sink
    assert "cookie" not in script  # the key is only ever sent as a header
    for template in TEMPLATES.rglob("*.html"):
        text = template.read_text()
        assert "<script>" not in text and " style=" not in text, template
        assert "| safe" not in text and "|safe" not in text, template


def test_fragments_render_the_counts_and_keep_hostile_names_as_text(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    svc, http = live()
    for n in range(3):
        add_file(svc, f"photo_{n}.jpg", FileStatus.SORTED, size=2048)
    add_file(svc, "copy.jpg", FileStatus.DUPLICATE, size=4096)
    add_file(svc, "wait.jpg", FileStatus.UNIQUE, size=10)
    add_file(svc, HOSTILE, FileStatus.ERROR, error="hash: <b>bad</b> & unreadable")
    add_batch(svc, "batch_000001", BatchStatus.SYNCING)
    for name in FRAGMENTS:
        answer = http.get(f"/dashboard/fragments/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].startswith("text/html")
        assert "<img src=x" not in answer.text, name
    status = http.get("/dashboard/fragments/status").text
    assert re.search(r'id="count-library"[^>]*>3<', status)
    assert re.search(r'id="count-waiting"[^>]*>1<', status)
    assert re.search(r'id="count-duplicates"[^>]*>1<', status)
    assert re.search(r'id="count-attention"[^>]*>1<', status)
    add_file(svc, "gone.jpg", FileStatus.MISSING, error="verify: gone")
    library = http.get("/dashboard/fragments/library").text
    assert "gone.jpg" in library and "verify: gone" in library
    assert 'data-status="SORTED"' not in library
    errors = http.get("/dashboard/fragments/errors").text
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in errors
    assert "hash: &lt;b&gt;bad&lt;/b&gt; &amp; unreadable" in errors
    assert "batch_000001" in http.get("/dashboard/fragments/activity").text
    found = http.get("/dashboard/fragments/files", params={"q": "PHOTO_1"}).text
    assert "photo_1.jpg" in found and "photo_2.jpg" not in found
    sorted_only = http.get("/dashboard/fragments/files", params={"status": "sorted"})
    assert sorted_only.text.count('data-status="SORTED"') == 3
    assert 'data-status="UNIQUE"' not in sorted_only.text
    bad = http.get("/dashboard/fragments/files", params={"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["code"] == "VALIDATION_ERROR"
    assert http.get("/dashboard/fragments/charts?span=week").status_code == 400
    daily = http.get("/dashboard/fragments/charts?span=day").text
    spec = re.search(r'id="chart-intake"[^>]*data-chart="([^"]+)"', daily)
    assert spec is not None
    intake = json.loads(html.unescape(spec.group(1)))
    assert len(intake["labels"]) == 30 and intake["stacked"] is True
    totals = {d["label"]: sum(d["data"]) for d in intake["datasets"]}
    assert totals == {
        "library": 3,
        "on its way": 1,
        "duplicate": 1,
        "needs attention": 2,  # the ERROR file and the MISSING one
        "skipped": 0,
    }


def test_files_fragment_pages_by_id_and_filters_by_capture_date(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    svc, http = live()
    ids = [
        add_file(
            svc,
            f"f{n:03}.jpg",
            FileStatus.SORTED,
            capture_time=datetime(2024, 1, 1) + timedelta(days=n),
        )
        for n in range(60)
    ]
    first = http.get("/dashboard/fragments/files").text
    assert first.count("<tr data-file=") == 50
    more = re.search(r'hx-get="(/dashboard/fragments/files\?after=\d+)"', first)
    assert more and more.group(1).endswith(f"after={ids[49]}")
    rest = http.get(more.group(1)).text
    assert rest.count("<tr data-file=") == 10 and "f059.jpg" in rest
    window = http.get(
        "/dashboard/fragments/files",
        params={"since": "2024-01-03", "until": "2024-01-04"},
    ).text
    assert sorted(set(re.findall(r"f\d{3}\.jpg", window))) == ["f002.jpg", "f003.jpg"]


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


def test_with_auth_the_pages_load_but_their_data_needs_the_key(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    _, http = live(auth={"enabled": True, "api_key": KEY})
    # The pages and assets hold no data; without them no browser could ask for the key.
    for path in PAGES:
        assert http.get(path).status_code == 200, path
    assert http.get("/static/app.js").status_code == 200
    assert http.get("/static/vendor/htmx.min.js").status_code == 200
    assert http.get("/health").status_code == 200
    for name in FRAGMENTS:
        path = f"/dashboard/fragments/{name}"
        refused = http.get(path)
        assert refused.status_code == 401, path
        body = refused.json()
        assert body["status"] == "error" and body["code"] == "UNAUTHORIZED"
        assert KEY not in body["message"]
        assert http.get(path, headers={"X-API-Key": "wrong" + KEY}).status_code == 401
        assert http.get(path, headers={"X-API-Key": KEY}).status_code == 200, path
    for path in ("/api/dashboard", "/api/duplicates", "/api/files/1/thumbnail"):
        assert http.get(path).status_code == 401, path
    assert http.post("/api/duplicates/1/resolve", json={}).status_code == 401


def test_the_overview_shows_the_last_library_check(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    from pipeline.models import File

    svc, http = live()
    assert "Not checked yet" in http.get("/dashboard/fragments/status").text
    folder = svc.ctx.roots.sorted_dir / "2020" / "01" / "02"
    folder.mkdir(parents=True)
    for name in ("kept.jpg", "gone.jpg"):
        path = folder / name
        path.write_bytes(name.encode())
        st = path.stat()
        svc.ctx.writer.call(
            lambda p=path, st=st: File.create(
                original_path=str(p),
                rel_path=p.name,
                current_path=str(p),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                status=FileStatus.SORTED,
            )
        )
    (folder / "gone.jpg").unlink()
    assert http.post("/api/library/verify", json={}).status_code == 202

    def checked() -> str | None:
        text = http.get("/dashboard/fragments/status").text
        return text if "Last checked" in text else None

    status = wait_until(checked, timeout=30)
    assert re.search(r"2 files, sizes and dates compared", status)
    assert "1 missing, 0 changed" in status


def test_the_overview_says_when_the_next_batch_comes(
    live: Callable[..., tuple[Any, httpx.Client]],
) -> None:
    svc, http = live(batch={"auto_create": True, "max_age_seconds": 3600})
    # The timer may not take these before the page is asked: an hour of age is due.
    svc.scheduler.stop()
    add_file(svc, "wait.jpg", FileStatus.UNIQUE, size=2048)
    status = http.get("/dashboard/fragments/status").text
    assert re.search(
        r'id="waiting".*1 file</span>\s*\(2.00 KiB\) waiting', status, re.S
    )
    assert re.search(r"Next batch at <time datetime=\"[0-9T:.-]+Z?\">", status)
