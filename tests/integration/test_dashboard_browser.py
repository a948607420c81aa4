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

import numpy as np
import pytest
from PIL import Image

from pipeline.models import Batch, BatchStatus, FileStatus
from web.app import create_app

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "web"))
from live import serve_app  # noqa: E402

from tests.conftest import add_file

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
        """A real mouse click at the centre of the element (scrolled into view first)."""
        box = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return {x: r.left + r.width / 2, y: r.top + r.height / 2}; })()"
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


def make_jpeg(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, "JPEG", quality=90)
    return path


def test_page_shows_real_counts_and_keeps_a_hostile_name_as_text(
    service: Callable[..., Any], open_page: Callable[[str], Page], tmp_path: Path
) -> None:
    svc = service()
    for n in range(3):
        add_file(svc, f"photo_{n}.jpg", FileStatus.UNIQUE, size=2048)
    add_file(svc, "copy.jpg", FileStatus.DUPLICATE, size=4096)
    add_file(svc, HOSTILE, FileStatus.ERROR, error="hash: <b>bad</b> & unreadable")
    svc.ctx.writer.call(
        lambda: Batch.create(name="batch_000001", status=BatchStatus.SYNCING)
    )

    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard")
        page.wait_for("document.getElementById('files-total').textContent === '5'")

        counts = page.eval(
            "Object.fromEntries([...document.querySelectorAll('#files-by-status dd')]"
            ".map(d => [d.dataset.status, d.textContent]))"
        )
        assert (
            counts["UNIQUE"] == "3"
            and counts["DUPLICATE"] == "1"
            and counts["ERROR"] == "1"
        )
        assert page.text("#count-unique") == "3"
        assert page.text("#count-duplicates") == "1"
        assert page.text("#batches-total") == "1"
        # Inbox: three UNIQUE rows of 2048 bytes and the ERROR row of 1000 (still there).
        assert page.text("#storage-body [data-folder=inbox] td") == "6.98 KiB"
        assert page.text("#storage-body [data-folder=duplicates_dir] td") == "4.00 KiB"
        assert page.eval("document.querySelectorAll('#hourly-chart rect').length") == 24
        bars = page.eval(
            "[...document.querySelectorAll('#hourly-chart rect')]"
            ".map(r => Number(r.dataset.count))"
        )
        assert sum(bars) == 5 and max(bars) == 5
        assert "database: ok" in page.text("#components")
        assert page.text("#version") == svc.app_state().version
        assert "batch_000001" in page.text("#sync-list")

        # The hostile name and message are shown verbatim, and nothing was injected.
        assert page.text("#errors-body .path") == str(
            Path(svc.settings.paths.inbox) / HOSTILE
        )
        assert page.text("#errors-body .message") == "hash: <b>bad</b> & unreadable"
        assert page.eval("document.querySelectorAll('img, b').length") == 0
        assert page.eval("window.__alerts") == []

        # New data appears through the periodic fetch, without reloading the page.
        page.eval("window.__sameDocument = true")
        add_file(svc, "late.jpg", FileStatus.NEW)
        page.wait_for(
            "document.getElementById('files-total').textContent === '6'", timeout=12
        )
        assert page.eval("window.__sameDocument") is True

        shot = tmp_path / "dashboard.png"
        shot.write_bytes(page.screenshot())
        assert (
            shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            and shot.stat().st_size > 10_000
        )
        assert page.js_errors() == []


def test_action_buttons_scan_batch_sort_and_show_errors(
    service: Callable[..., Any], open_page: Callable[[str], Page]
) -> None:
    svc = service()
    make_jpeg(Path(svc.settings.paths.inbox) / "beach.jpg", seed=1)

    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard")
        page.wait_for("document.body.dataset.refreshed")

        page.click("#act-dedup")
        page.wait_for(
            "document.getElementById('action-message').textContent"
            ".startsWith('Inbox scan job #')"
        )
        page.wait_for("document.getElementById('count-unique').textContent === '1'")
        page.wait_for(
            "document.getElementById('job-dedup-line').textContent.includes('DONE')"
        )

        page.click("#act-batch")
        page.wait_for(
            "document.getElementById('action-message').textContent"
            ".startsWith('Created batch_000001: 1 file')"
        )
        page.wait_for(
            "!!document.querySelector('#sync-list [data-batch=batch_000001]')"
        )
        assert page.text("#batches-total") == "1"
        page.wait_for(
            "document.getElementById('announcer').textContent.startsWith('Created batch_000001')"
        )

        page.click("#act-sync")
        message = page.wait_for(
            "(() => { const t = document.getElementById('action-message').textContent;"
            " return t.startsWith('Start sync failed') && t; })()"
        )
        assert (
            message
            == "Start sync failed: Syncthing is disabled (syncthing.enabled: false)"
        )
        assert (
            page.eval("document.getElementById('action-message').className") == "error"
        )

        page.click("#act-cleanup")
        page.wait_for(
            "/^Cleanup dry run: \\d+ actions? would be taken\\.$/"
            ".test(document.getElementById('action-message').textContent)"
        )

        # Syncthing is off, so a CREATED batch goes straight to sorting.
        page.click("#act-sort")
        page.wait_for(
            "document.getElementById('action-message').textContent.startsWith('Sort job #')"
        )
        page.wait_for(
            "document.getElementById('job-sort-line').textContent.includes('DONE')"
        )
        page.wait_for(
            "document.querySelector('#files-by-status [data-status=SORTED]').textContent === '1'"
        )
        assert page.js_errors() == []


def test_key_prompt_rejects_a_wrong_key_then_accepts_the_right_one(
    service: Callable[..., Any], open_page: Callable[[str], Page]
) -> None:
    svc = service(auth={"enabled": True, "api_key": KEY})
    add_file(svc, "a.jpg", FileStatus.UNIQUE)

    with serve_app(create_app(svc.app_state())) as url:
        page = open_page(url + "/dashboard")
        # The page and its assets hold no data: they load without a key, the API does not.
        assert page.eval("document.title") == "Media Pipeline dashboard"
        page.wait_for("!document.getElementById('auth').hidden")
        assert page.text("#files-total") == "–"
        assert page.eval("document.activeElement.id") == "key-input"

        page.type_into("#key-input", "wrong-" + KEY)
        page.click("#key-submit")
        error = page.wait_for(
            "(() => { const t = document.getElementById('auth-error').textContent;"
            " return t.startsWith('The API key was not accepted') && t; })()"
        )
        assert "missing or invalid API key" in error
        assert KEY not in error
        assert page.text("#files-total") == "–"

        page.type_into("#key-input", KEY)
        page.click("#key-submit")
        page.wait_for("document.getElementById('auth').hidden")
        page.wait_for("document.getElementById('files-total').textContent === '1'")
        assert page.eval("sessionStorage.getItem('mediaPipeline.apiKey')") == KEY
        assert KEY not in page.eval("location.href")
        assert page.js_errors() == []
