"""The dashboard page in a real headless Chromium, driven over the DevTools protocol.

Chromium runs with ``--remote-debugging-pipe``: CDP messages are JSON separated by NUL
bytes on file descriptors 3 (to the browser) and 4 (from it), so no websocket library
is needed. The browser exits by itself when the pipe closes (even if pytest is killed)
and is also killed by its process group at the end of the module.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.models import Batch, BatchStatus, File, FileStatus, database_proxy
from web.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from live import serve_app  # noqa: E402

from tests.conftest import add_file, wait_until
from tests.pipeline.test_review import near_pair, photo, take

CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--window-size=1280,1500",
    "--remote-debugging-pipe",
)
CDP_TIMEOUT = 15.0
HOSTILE = "<img src=x onerror=alert(1)>.jpg"
KEY = "k" * 32
# Installed before any page script: a successful injection would set this flag.
ALERT_TRAP = (
    "window.__alerts = []; window.alert = (m) => window.__alerts.push(String(m));"
)


class CdpError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium process and its DevTools pipe."""

    def __init__(
        self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int
    ):
        self.proc = proc
        self._out = to_browser
        self._in = from_browser
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    def launch(cls, profile: Path) -> Chromium:
        binary = next((p for p in CHROMIUM_CANDIDATES if os.access(p, os.X_OK)), None)
        assert binary, f"Chromium not found at any of {CHROMIUM_CANDIDATES}"
        their_in, our_out = os.pipe()
        our_in, their_out = os.pipe()
        # Above 9 so the shell's `3<&N 4>&M` cannot clash with the target numbers.
        their_in, their_out = _high_fd(their_in), _high_fd(their_out)
        shell = f'exec "$@" 3<&{their_in} 4>&{their_out} {their_in}<&- {their_out}>&-'
        args = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        proc = subprocess.Popen(
            ["/bin/bash", "-c", shell, "chromium", *args],
            pass_fds=(their_in, their_out),
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(their_in)
        os.close(their_out)
        return cls(proc, our_out, our_in)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
    ) -> dict[str, Any]:
        """Send one command and wait for its answer; events seen meanwhile are kept."""
        self._next_id += 1
        message: dict[str, Any] = {
            "id": self._next_id,
            "method": method,
            "params": params or {},
        }
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + CDP_TIMEOUT
        while True:
            reply = self._read(deadline)
            if reply.get("id") != self._next_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise CdpError(f"{method}: {reply['error']}")
            return reply.get("result", {})

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._in], [], [], max(0.0, left))
            if not ready:
                raise CdpError(f"no answer from Chromium within {CDP_TIMEOUT} s")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise CdpError(
                    f"Chromium closed the pipe (exit code {self.proc.poll()})"
                )
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def new_page(self) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call(
            "Target.attachToTarget", {"targetId": target, "flatten": True}
        )["sessionId"]
        page = Page(self, target, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Log.enable")
        page.send("Network.enable")
        page.send("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_TRAP})
        return page

    def stop(self) -> None:
        """Close the pipe (Chromium exits on its own), then kill its process group."""
        for fd in (self._out, self._in):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=5)


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Page:
    """One tab, attached in flat mode (commands carry its session id)."""

    def __init__(self, browser: Chromium, target: str, session: str):
        self.browser = browser
        self.target = target
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for(
            "document.readyState === 'complete' && location.href === " + json.dumps(url)
        )

    def eval(self, expression: str) -> Any:
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10) -> Any:
        """Poll a JS expression until truthy; fail with the last value after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{expression!r} still {value!r} after {timeout} s"
                )
            time.sleep(0.05)

    def text(self, selector: str) -> str:
        return self.eval(f"document.querySelector({json.dumps(selector)}).textContent")

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the element (scrolled into view first).

        Waits until the element stands still for two frames and is the one under the
        pointer: a click must not land on a layout that is still moving (a swap, a
        message appearing above it).
        """
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e) return null; e.scrollIntoView({block: 'center'});"
            " const frame = () => new Promise(r => requestAnimationFrame(() => r()));"
            " const a = e.getBoundingClientRect();"
            " return frame().then(frame).then(() => {"
            "  const b = e.getBoundingClientRect();"
            "  const x = b.left + b.width / 2, y = b.top + b.height / 2;"
            "  const hit = document.elementFromPoint(x, y);"
            "  const still = a.left === b.left && a.top === b.top;"
            "  return still && hit && e.contains(hit) ? {x: x, y: y} : null; }); })()"
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent",
                {
                    "type": kind,
                    "x": box["x"],
                    "y": box["y"],
                    "button": "left",
                    "clickCount": 1,
                },
            )

    def type_into(self, selector: str, text: str) -> None:
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def js_errors(self) -> list[Any]:
        """Uncaught exceptions, console errors and CSP violations of this tab.

        HTTP error statuses (the 401s and 409s the tests provoke) are not counted.
        """
        mine = [e for e in self.browser.events if e.get("sessionId") == self.session]
        found = []
        for event in mine:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(params)
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append(params)
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                if params["entry"]["source"] != "network":
                    found.append(params["entry"])
        return found

    def requested_urls(self) -> list[str]:
        """Every URL this tab asked for (documents, scripts, fetches, images)."""
        mine = [e for e in self.browser.events if e.get("sessionId") == self.session]
        return [
            e["params"]["request"]["url"]
            for e in mine
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def press_tab(self) -> str:
        """Press Tab; returns a description of the newly focused element."""
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                {
                    "type": kind,
                    "key": "Tab",
                    "code": "Tab",
                    "windowsVirtualKeyCode": 9,
                },
            )
        return self.eval(
            "(() => { const e = document.activeElement;"
            " return e ? (e.id || e.tagName + ':' + e.textContent.trim()) : ''; })()"
        )

    def press_enter(self) -> None:
        for kind in ("keyDown", "keyUp"):
            self.send(
                "Input.dispatchKeyEvent",
                {
                    "type": kind,
                    "key": "Enter",
                    "code": "Enter",
                    "windowsVirtualKeyCode": 13,
                    **({"text": "\r"} if kind == "keyDown" else {}),
                },
            )

    def screenshot(self) -> bytes:
        return base64.b64decode(
            self.send("Page.captureScreenshot", {"format": "png"})["data"]
        )

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target})


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chromium = Chromium.launch(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.stop()


@pytest.fixture
def open_page(browser: Chromium) -> Iterator[Callable[[str], Page]]:
    """Factory: a new tab showing `url`; closed after the test."""
    pages: list[Page] = []

    def make(url: str) -> Page:
        page = browser.new_page()
        pages.append(page)
        page.goto(url)
        return page

    yield make
    for page in pages:
        page.close()


# What every control on the pages must have: a name a screen reader can read out.
UNLABELLED = """[...document.querySelectorAll('button, a[href], input, select')]
  .filter(e => !e.closest('[hidden]'))
  .filter(e => {
    const label = e.getAttribute('aria-label') || e.textContent.trim()
      || (e.id && document.querySelector('label[for="' + e.id + '"]'));
    return !label || e.tabIndex < 0;
  }).map(e => e.outerHTML.slice(0, 80))"""


def populate(svc: Any) -> dict[str, Any]:
    """A daemon with a bit of everything, files real on disk where it matters."""
    inbox = svc.ctx.roots.inbox
    big, small = near_pair(svc, 11)
    big2, dup = near_pair(svc, 12)
    lone = take(svc, photo(inbox / "lone.jpg", 13))
    for n in range(3):
        add_file(svc, f"sorted_{n}.jpg", FileStatus.SORTED, size=2_000_000)
    add_file(svc, "copy.jpg", FileStatus.DUPLICATE, size=4096)
    failed = add_file(
        svc, HOSTILE, FileStatus.ERROR, error="hash: <b>bad</b> & unreadable"
    )
    add_file(svc, "notes.txt", FileStatus.SKIPPED, error="not a photo or video")
    svc.ctx.writer.call(
        lambda: Batch.create(
            name="batch_000001",
            status=BatchStatus.SYNCING,
            file_count=2,
            size_bytes=4_000_000,
            bytes_needed=1_000_000,
            progress=75.0,
        )
    )
    return {
        "big": big,
        "small": small,
        "big2": big2,
        "dup": dup,
        "lone": lone,
        "failed": failed,
    }


def check_page(page: Page, base: str, shots: Path, name: str) -> None:
    """Common checks: no errors, only the daemon asked, labelled controls, a screenshot."""
    page.wait_for("document.body.dataset.refreshed")
    assert page.js_errors() == []
    assert page.eval("window.__alerts") == []
    host = base.split("://", 1)[1]
    foreign = [
        u
        for u in page.requested_urls()
        if not (u.startswith(base + "/") or u.startswith("blob:" + base + "/"))
        and u != "about:blank"
        # Chromium's own icons (the date picker's) are data: URLs: no network.
        and not u.startswith("data:")
    ]
    assert foreign == [], f"requests to hosts other than {host}"
    assert page.eval(UNLABELLED) == []
    shot = shots / f"{name}.png"
    shot.write_bytes(page.screenshot())
    assert (
        shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    )


def test_every_page_loads_with_data_and_no_errors(
    service: Callable[..., Any], open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    svc = service()
    made = populate(svc)
    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard")
        # Each part of the page is its own fragment, arriving in any order.
        page.wait_for(
            "['count-library', 'components', 'sync-list', 'storage-body']"
            ".every(id => !!document.getElementById(id))"
        )
        assert page.text("#count-library") == "3"
        assert page.text("#count-waiting") == "5"  # big, small, big2, dup, lone
        assert page.text("#count-duplicates") == "1"
        assert page.text("#count-attention") == "1"
        assert "database: ok" in page.text("#components")
        assert page.text("#version") == svc.app_state().version
        assert "batch_000001" in page.text("#sync-list")
        assert page.eval(
            "document.querySelector('[data-batch=batch_000001] progress').value"
        ) == pytest.approx(75)
        assert page.text("[data-stage=library] .stage-count") == "3"
        page.wait_for("document.querySelectorAll('#charts canvas').length === 3")
        page.wait_for("!!window.Chart && !!Chart.getChart('chart-intake')")
        stacked = page.eval(
            "Chart.getChart('chart-intake').data.datasets"
            ".map(d => [d.label, d.data.reduce((a, b) => a + b, 0)])"
        )
        assert dict(stacked) == {
            "library": 3,
            "on its way": 5,
            "duplicate": 1,
            "needs attention": 1,
            "skipped": 1,
        }
        assert page.text("#storage-body [data-folder=sorted_dir] td") == "5.72 MiB"
        # Live: a new file shows up without reloading the page.
        page.eval("window.__sameDocument = true")
        add_file(svc, "late.jpg", FileStatus.SORTED)
        page.wait_for(
            "document.getElementById('count-library').textContent === '4'",
            timeout=12,
        )
        assert page.eval("window.__sameDocument") is True
        check_page(page, url, tmp_path, "overview")

        page = open_page(url + "/dashboard/review")
        page.wait_for("document.querySelectorAll('[data-group]').length === 2")
        page.wait_for(
            "[...document.querySelectorAll('img[data-thumb]')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        assert page.eval(
            "[...document.querySelectorAll('img[data-thumb]')].map(i => i.src)"
            ".every(s => s.startsWith('blob:'))"
        )
        group = f"[data-group='{made['big'].id}']"
        assert made["small"].rel_path in page.text(group)
        check_page(page, url, tmp_path, "review")

        page = open_page(url + "/dashboard/problems")
        page.wait_for("!!document.getElementById('errors-body')")
        assert page.text("#errors-body .path") == str(
            Path(svc.settings.paths.inbox) / HOSTILE
        )
        assert page.text("#errors-body .message") == "hash: <b>bad</b> & unreadable"
        assert page.eval("document.querySelectorAll('main b').length") == 0
        page.wait_for(
            "document.getElementById('skipped').textContent.includes('notes.txt')"
        )
        check_page(page, url, tmp_path, "problems")

        page = open_page(url + "/dashboard/files")
        page.wait_for("!!document.getElementById('files-body')")
        page.type_into("#q", "lone")
        page.press_enter()
        page.wait_for(
            "document.querySelectorAll('#files-body tr').length === 1"
            " && document.getElementById('files-body').textContent.includes('lone.jpg')"
        )
        page.wait_for(
            "(() => { const i = document.querySelector('#files-body img');"
            " return i && i.complete && i.naturalWidth > 0; })()"
        )
        page.eval(
            "document.getElementById('q').value = '';"
            "document.getElementById('status').value = 'SORTED';"
            "document.getElementById('status').dispatchEvent("
            "new Event('change', {bubbles: true}))"
        )
        page.wait_for("document.querySelectorAll('#files-body tr').length === 4")
        check_page(page, url, tmp_path, "files")


def test_review_buttons_keep_both_and_set_aside_by_keyboard_and_mouse(
    service: Callable[..., Any], open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    svc = service()
    made = populate(svc)
    small, dup = made["small"], made["dup"]
    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard/review")
        page.wait_for(f"!!document.getElementById('keep-{small.id}')")

        # Keyboard only: Tab reaches "Keep both", Enter presses it.
        for _ in range(60):
            if page.press_tab() == f"keep-{small.id}":
                break
        else:
            raise AssertionError("Tab never reached the keep button")
        page.press_enter()
        page.wait_for(f"!document.getElementById('keep-{small.id}')")
        page.wait_for(
            "document.getElementById('flash').textContent.startsWith('Kept ')"
        )
        row = File.get_by_id(small.id)
        assert row.near_duplicate_of is None and row.status == FileStatus.UNIQUE
        assert Path(row.current_path).exists()
        assert database_proxy.execute_sql(
            "SELECT low, high FROM near_keeps"
        ).fetchall() == [(made["big"].id, small.id)]

        source = Path(dup.current_path)
        content = source.read_bytes()
        page.click(f"#dup-{dup.id}")
        page.wait_for("!!document.getElementById('no-groups')")
        moved = File.get_by_id(dup.id)
        assert moved.status == FileStatus.DUPLICATE
        assert moved.duplicate_of == made["big2"].id
        assert not source.exists()
        assert Path(moved.current_path).parent == svc.ctx.roots.duplicates_dir
        assert Path(moved.current_path).read_bytes() == content
        check_page(page, url, tmp_path, "review-done")


def test_run_now_buttons_post_json_and_report(
    service: Callable[..., Any], open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    svc = service()
    photo(Path(svc.settings.paths.inbox) / "beach.jpg", seed=1)
    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard")
        page.wait_for("document.body.dataset.refreshed")

        page.click("#act-dedup")
        page.wait_for(
            "document.getElementById('action-message').textContent"
            ".startsWith('Inbox scan job #')"
        )
        page.wait_for(
            "document.getElementById('count-waiting').textContent === '1'", timeout=15
        )
        page.click("#act-batch")
        page.wait_for(
            "document.getElementById('action-message').textContent"
            " === 'Created batch_000001: 1 file.'"
        )
        page.click("#act-sync")
        message = page.wait_for(
            "(() => { const t = document.getElementById('action-message').textContent;"
            " return t.startsWith('Start sync failed') && t; })()"
        )
        assert "Syncthing is disabled" in message
        page.click("#act-cleanup")
        page.wait_for(
            "/^Cleanup dry run: \\d+ actions? would be taken\\.$/"
            ".test(document.getElementById('action-message').textContent)"
        )
        page.click("#act-sort")
        page.wait_for(
            "document.getElementById('count-library').textContent === '1'", timeout=15
        )
        assert File.get().status == FileStatus.SORTED
        assert page.js_errors() == []


def test_key_is_asked_once_and_sent_only_as_a_header(
    service: Callable[..., Any], open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    svc = service(auth={"enabled": True, "api_key": KEY})
    made = populate(svc)
    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard/review")
        assert page.eval("document.title").startswith("Review near-duplicates")
        page.wait_for("!document.getElementById('auth').hidden")
        assert page.eval("document.activeElement.id") == "key-input"
        assert page.eval("document.querySelectorAll('[data-group]').length") == 0

        page.type_into("#key-input", "wrong-" + KEY)
        page.click("#key-submit")
        error = page.wait_for(
            "(() => { const t = document.getElementById('auth-error').textContent;"
            " return t.startsWith('The API key was not accepted') && t; })()"
        )
        assert KEY not in error

        page.type_into("#key-input", KEY)
        page.click("#key-submit")
        page.wait_for("document.querySelectorAll('[data-group]').length === 2")
        page.wait_for("document.getElementById('auth').hidden")
        # Previews need the key too: fetched with the header, shown as blob: URLs.
        page.wait_for(
            "[...document.querySelectorAll('img[data-thumb]')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        page.click(f"#keep-{made['small'].id}")
        page.wait_for(f"!document.getElementById('keep-{made['small'].id}')")
        assert File.get_by_id(made["small"].id).near_duplicate_of is None

        # Asked once: another page of the same tab uses the stored key.
        page.goto(url + "/dashboard")
        page.wait_for("!!document.getElementById('count-library')")
        assert page.eval("document.getElementById('auth').hidden") is True
        assert page.eval("document.cookie") == ""
        assert all(KEY not in u for u in page.requested_urls())
        assert page.eval("sessionStorage.getItem('mediaPipeline.apiKey')") == KEY
        check_page(page, url, tmp_path, "overview-auth")


def test_retry_buttons_send_failed_files_back_to_their_stage(
    service: Callable[..., Any], open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    svc = service()
    inbox = svc.ctx.roots.inbox
    failed = []
    for n in range(3):
        path = photo(inbox / f"failed_{n}.jpg", 60 + n)
        failed.append(
            add_file(
                svc,
                path.name,
                FileStatus.ERROR,
                size=path.stat().st_size,
                error="hash: [Errno 5] Input/output error",
                error_stage="hash",
                attempts=2,
            )
        )
    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard/problems")
        page.wait_for(f"!!document.getElementById('retry-{failed[0]}')")
        row = f"#errors-body [data-file='{failed[0]}']"
        assert "hash" in page.text(row) and "Input/output error" in page.text(row)

        page.click(f"#retry-{failed[0]}")
        page.wait_for(
            "document.getElementById('flash').textContent"
            f" === 'File #{failed[0]} was sent back to its stage.'"
        )
        one = wait_until(
            lambda: File.get_by_id(failed[0]).status == FileStatus.UNIQUE
            and File.get_by_id(failed[0]),
            timeout=15,
        )
        assert one.sha256 and Path(one.current_path) == inbox / "failed_0.jpg"
        assert Path(one.current_path).exists()
        assert File.get_by_id(failed[1]).status == FileStatus.ERROR

        page.click("#retry-all")
        page.wait_for(
            "document.getElementById('flash').textContent"
            " === '2 files sent back to the stage that failed.'"
        )
        wait_until(
            lambda: all(
                File.get_by_id(i).status == FileStatus.UNIQUE for i in failed[1:]
            ),
            timeout=15,
        )
        page.wait_for("!!document.getElementById('no-errors')")
        assert all((inbox / f"failed_{n}.jpg").exists() for n in range(3))
        check_page(page, url, tmp_path, "problems-done")
