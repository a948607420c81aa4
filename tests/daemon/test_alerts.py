"""Owner notifications from a real daemon to real receivers (no Apprise fakes).

A local HTTP server is the `json://` target, a local aiosmtpd server the `mailto://`
one; the daemon is a started Service with its real web app under uvicorn.
"""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from pipeline import hash_stage
from tests.conftest import free_port, wait_until
from tests.web.live import serve_app
from web.app import create_app

SECRET = "s3cr3t-Pa55word"


class JsonReceiver:
    """An HTTP server keeping every JSON body posted to it; `fail` answers 500."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail:
                    receiver.fail -= 1
                    self.send_response(500)
                else:
                    receiver.bodies.append(json.loads(raw))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self) -> str:
        return f"json://user:{SECRET}@127.0.0.1:{self.port}/hook"

    def titles(self) -> list[str]:
        return [b["title"] for b in self.bodies]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    """What aiosmtpd received, as raw message texts."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(
        self, server: Any, session: Any, envelope: Any
    ) -> str:  # noqa: N802
        self.messages.append(envelope.content.decode("utf8", "replace"))
        return "250 OK"


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    r = JsonReceiver()
    yield r
    r.close()


def _accept_owner(
    server: Any, session: Any, envelope: Any, mechanism: str, data: Any
) -> AuthResult:
    return AuthResult(success=getattr(data, "password", b"") == SECRET.encode())


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=_accept_owner,
        auth_require_tls=False,
    )
    controller.start()
    url = (
        f"mailto://owner:{SECRET}@example.com:{port}"
        "?smtp=127.0.0.1&from=pipeline@example.com&to=owner@example.com"
    )
    yield box, url
    controller.stop()


def _notify(urls: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "notify": {"urls": urls, "digest_minutes": 0.02, **extra},
        "server": {"public_url": "https://media.example.org"},
    }


def _fail_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault: every read for hashing fails with EIO (a file the disk lost)."""

    def unreadable(p: Path) -> Any:
        raise OSError(errno.EIO, "Input/output error", str(p))

    monkeypatch.setattr(hash_stage, "sha256_file", unreadable)


def _feed(svc: Any, names: list[str]) -> None:
    for name in names:
        path = Path(svc.settings.paths.inbox) / name
        path.write_bytes(name.encode() * 50)
        svc.submit(path)


def test_error_episode_first_at_once_then_one_digest(
    service: Callable[..., Any], receiver: JsonReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_hash(monkeypatch)
    svc = service(**_notify([receiver.url()]))
    _feed(svc, ["a1.bin"])
    wait_until(lambda: receiver.titles() == ["A file failed"])
    first = receiver.bodies[0]["message"]
    assert "a1.bin" in first and "Input/output error" in first
    assert "https://media.example.org" in first and "retry" in first
    _feed(svc, [f"b{i:02}.bin" for i in range(12)])
    wait_until(lambda: len(receiver.bodies) == 2)
    digest = receiver.bodies[1]
    assert digest["title"] == "12 more files failed"
    listed = [line for line in digest["message"].splitlines() if line.startswith("- ")]
    assert len(listed) == 10 and "... and 2 more" in digest["message"]
    history = svc.ctx.alerts.history()
    assert [h["event"] for h in history] == ["error", "error"]
    assert all(h["delivered"] and h["error"] is None for h in history)
    assert all(SECRET not in json.dumps(b) for b in receiver.bodies)


def test_test_route_and_history_answer_per_url(
    service: Callable[..., Any],
    receiver: JsonReceiver,
    mailbox: tuple[Mailbox, str],
) -> None:
    box, mail_url = mailbox
    dead = f"json://127.0.0.1:{free_port()}/nobody"
    svc = service(**_notify([receiver.url(), mail_url, dead]))
    svc.ctx.alerts._retries = 0  # the dead URL's failure is the point, not its retries
    with serve_app(create_app(svc.app_state())) as base:
        reply = httpx.post(f"{base}/api/notify/test", json={}, timeout=60)
        assert reply.status_code == 200, reply.text
        answer = reply.json()["data"]
        history = httpx.get(f"{base}/api/notify/history").json()["data"]["messages"]
        config = httpx.get(f"{base}/api/config").json()["data"]["config"]
        panel = httpx.get(f"{base}/dashboard/fragments/notifications").text
        page = httpx.get(f"{base}/dashboard/problems").text
    assert 'id="notify-test"' in page and 'hx-post="/api/notify/test"' in page
    assert "Media Pipeline test message" in panel and "no: " in panel
    delivered = [r["delivered"] for r in answer["results"]]
    assert delivered == [True, True, False] and answer["delivered"] is False
    assert answer["results"][2]["error"]
    assert receiver.titles() == ["Media Pipeline test message"]
    wait_until(lambda: box.messages)
    assert "Media Pipeline test message" in box.messages[0]
    assert history[0]["event"] == "test" and history[0]["delivered"] is False
    for text in (json.dumps(answer), json.dumps(history), json.dumps(config), panel):
        assert SECRET not in text
    assert config["notify"]["urls"] == "********"
    log = (Path(svc.settings.paths.log_dir)).glob("*")
    assert all(SECRET not in p.read_text(errors="replace") for p in log if p.is_file())


def test_a_failing_receiver_is_retried_and_never_slows_a_stage(
    service: Callable[..., Any], receiver: JsonReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.fail = 2
    _fail_hash(monkeypatch)
    svc = service(**_notify([receiver.url()]))
    svc.ctx.alerts._backoff = 0.05
    _feed(svc, ["c1.bin"])
    wait_until(lambda: receiver.titles() == ["A file failed"])
    assert svc.ctx.alerts.history()[0]["delivered"] is True


def test_events_not_chosen_send_nothing(
    service: Callable[..., Any], receiver: JsonReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fail_hash(monkeypatch)
    svc = service(**_notify([receiver.url()], events=["recovered"]))
    _feed(svc, ["d1.bin"])
    from pipeline.models import File, FileStatus

    wait_until(lambda: File.get_or_none(File.status == FileStatus.ERROR))
    svc.ctx.alerts.event("recovered", "probe", "after the error")
    wait_until(lambda: receiver.titles() == ["probe"])


def test_unknown_event_is_refused_by_the_config(tmp_path: Path) -> None:
    from daemon.config import ConfigError, validate
    from tests.conftest import base_config

    with pytest.raises(ConfigError) as err:
        validate(base_config(tmp_path, notify={"events": ["eror"], "urls": []}))
    assert "notify.events" in str(err.value)


def test_a_stalled_batch_and_a_silent_syncthing_are_told_once(
    receiver: JsonReceiver,
) -> None:
    from daemon.alerting import apprise_delivery
    from pipeline.alerts import Alerts
    from pipeline.settings import NotifySettings

    clock = [0.0]
    settings = NotifySettings(urls=[receiver.url()], sync_stalled_hours=1)
    alerts = Alerts(
        apprise_delivery(lambda: settings.urls),
        lambda: settings,
        lambda: "",
        monotonic=lambda: clock[0],
    )
    alerts.start()
    try:
        alerts.sync_seen([(1, "batch_000001")], reachable=False)
        clock[0] = 3599
        alerts.sync_seen([(1, "batch_000001"), (2, "batch_000002")], False)
        clock[0] = 3600
        for _ in range(2):  # the second poll tells nothing new
            alerts.sync_seen([(1, "batch_000001"), (2, "batch_000002")], False)
        wait_until(lambda: len(receiver.bodies) == 2)
        titles = receiver.titles()
        assert titles == [
            "1 batches not synced for 1 hours",
            "Syncthing unreachable for 1 hours",
        ]
        assert "batch_000001" in receiver.bodies[0]["message"]
        assert "batch_000002" not in receiver.bodies[0]["message"]
        clock[0] = 7200  # batch 2 is late now; Syncthing answered meanwhile
        alerts.sync_seen([(2, "batch_000002")], True)
        wait_until(lambda: len(receiver.bodies) == 3)
        assert "batch_000002" in receiver.bodies[2]["message"]
    finally:
        alerts.stop()
    assert [h["event"] for h in alerts.history()] == ["sync_stalled"] * 3
