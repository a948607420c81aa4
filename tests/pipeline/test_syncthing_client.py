"""SyncthingClient on MockTransport and real sockets: retries, errors, the key."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from loguru import logger

from pipeline.syncthing import (
    SyncthingClient,
    SyncthingError,
    SyncthingStarting,
    SyncthingUnauthorized,
    SyncthingUnavailable,
)

KEY = "sEcReT-api-KEY-0123456789"
URL = "http://syncthing.test:8384"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler answering from a script, recording every request."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer


def make_client(
    recorder: Recorder, sleeps: list[float], **kwargs: object
) -> SyncthingClient:
    kwargs.setdefault("retries", 3)
    return SyncthingClient(
        URL,
        KEY,
        transport=httpx.MockTransport(recorder),
        sleep=sleeps.append,
        **kwargs,  # type: ignore[arg-type]
    )


def ok(data: object) -> httpx.Response:
    return httpx.Response(200, json=data)


@pytest.fixture
def logs() -> Iterator[list[str]]:
    """Every loguru message (with bound extras) emitted during the test."""
    lines: list[str] = []
    sink_id = logger.add(
        lambda m: lines.append(f"{m} {m.record['extra']}"), level="DEBUG"
    )
    yield lines
    logger.remove(sink_id)


def exception_texts(exc: BaseException) -> str:
    """str and repr of an exception and of everything chained to it."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        texts += [str(seen), repr(seen), repr(seen.args)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


def test_sends_api_key_header_and_parses_my_id() -> None:
    recorder = Recorder(ok({"myID": "AAAAAAA-BBBBBBB"}))
    with make_client(recorder, []) as client:
        assert client.my_id() == "AAAAAAA-BBBBBBB"
    request = recorder.requests[0]
    assert request.headers["X-API-Key"] == KEY
    assert request.url.path == "/rest/system/status"


def test_retries_a_500_then_succeeds_with_backoff_in_range(logs: list[str]) -> None:
    recorder = Recorder(httpx.Response(500, text="boom"), ok({"ping": "pong"}))
    sleeps: list[float] = []
    with make_client(recorder, sleeps, backoff_base=0.5) as client:
        client.ping()
    assert len(recorder.requests) == 2
    assert len(sleeps) == 1 and 0.25 <= sleeps[0] <= 0.5
    assert any("HTTP 500" in line and "retrying" in line for line in logs)


def test_persistent_500_raises_unavailable_with_capped_backoff() -> None:
    recorder = Recorder(httpx.Response(503, text="overloaded"))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps, retries=5, backoff_base=1.0, backoff_max=3.0)
    with pytest.raises(SyncthingUnavailable, match="HTTP 503: overloaded") as info:
        client.devices()
    assert len(recorder.requests) == 6
    caps = [1.0, 2.0, 3.0, 3.0, 3.0]
    assert all(cap / 2 <= got <= cap for got, cap in zip(sleeps, caps, strict=True))
    assert "6 attempt" in str(info.value)


def test_timeout_is_retried_then_unavailable() -> None:
    recorder = Recorder(httpx.ReadTimeout("read timed out"))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps, retries=2)
    with pytest.raises(SyncthingUnavailable, match="timed out"):
        client.ping()
    assert len(recorder.requests) == 3 and len(sleeps) == 2


def test_connection_error_then_success() -> None:
    recorder = Recorder(httpx.ConnectError("refused"), ok([{"deviceID": "X"}]))
    sleeps: list[float] = []
    with make_client(recorder, sleeps) as client:
        assert client.devices() == [{"deviceID": "X"}]
    assert len(sleeps) == 1


def test_real_refused_connection_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more: the kernel refuses the connection.
    sleeps: list[float] = []
    client = SyncthingClient(
        f"http://127.0.0.1:{port}", KEY, retries=1, sleep=sleeps.append
    )
    with pytest.raises(SyncthingUnavailable, match="connection failed"):
        client.ping()
    assert len(sleeps) == 1
    assert client.health() == "unreachable"


def test_real_server_that_never_answers_times_out() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)  # the handshake completes, but nobody ever answers
        port = server.getsockname()[1]
        client = SyncthingClient(
            f"http://127.0.0.1:{port}",
            KEY,
            timeout=0.2,
            retries=1,
            sleep=lambda _: None,
        )
        with pytest.raises(SyncthingUnavailable, match="timed out"):
            client.ping()


@pytest.mark.parametrize(
    ("status", "body"), [(403, "CSRF Error\n"), (401, "Not Authorized")]
)
def test_refused_key_raises_unauthorized_without_retry(status: int, body: str) -> None:
    recorder = Recorder(httpx.Response(status, text=body))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps)
    with pytest.raises(SyncthingUnauthorized) as info:
        client.my_id()
    assert info.value.status_code == status
    assert len(recorder.requests) == 1 and sleeps == []
    assert "api_key" in str(info.value)


def test_malformed_json_raises_syncthing_error_without_retry() -> None:
    recorder = Recorder(httpx.Response(200, text="<html>not json"))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps)
    with pytest.raises(SyncthingError, match=r"malformed JSON .*\(HTTP 200\)") as info:
        client.devices()
    assert not isinstance(info.value, SyncthingUnavailable)
    assert len(recorder.requests) == 1 and sleeps == []


def test_wrong_json_shape_is_an_error() -> None:
    client = make_client(Recorder(ok({"not": "a list"})), [])
    with pytest.raises(SyncthingError, match="not a list"):
        client.devices()
    client = make_client(Recorder(ok({"version": "v1"})), [])
    with pytest.raises(SyncthingError, match="myID"):
        client.my_id()


def test_other_client_errors_are_not_retried() -> None:
    recorder = Recorder(httpx.Response(404, text="No folder with given ID"))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps)
    with pytest.raises(SyncthingError, match="No folder with given ID") as info:
        client.folder("nope")
    assert info.value.status_code == 404
    assert type(info.value) is SyncthingError
    assert len(recorder.requests) == 1 and sleeps == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(500, text=f"internal error with key {KEY}"),
        httpx.Response(403, text=f"CSRF Error {KEY}"),
        httpx.Response(200, text=f"garbage {KEY}"),
        httpx.ConnectError(f"cannot connect, key={KEY}"),
        httpx.ReadTimeout(f"timeout {KEY}"),
    ],
    ids=["500", "403", "malformed", "connect", "timeout"],
)
def test_key_never_in_exceptions_or_logs(
    answer: httpx.Response | Exception, logs: list[str]
) -> None:
    client = make_client(Recorder(answer), [], retries=2)
    with pytest.raises(SyncthingError) as info:
        client.devices()
    texts = exception_texts(info.value)
    assert KEY not in texts
    assert KEY not in "\n".join(logs)
    assert client.health() in ("unreachable", "unauthorized")
    assert KEY not in "\n".join(logs)


def test_health_classifies_with_a_single_attempt() -> None:
    sleeps: list[float] = []
    assert make_client(Recorder(ok({"ping": "pong"})), sleeps).health() == "ok"
    refused = Recorder(httpx.Response(403, text="CSRF Error"))
    assert make_client(refused, sleeps).health() == "unauthorized"
    down = Recorder(httpx.ConnectError("refused"))
    assert make_client(down, sleeps).health() == "unreachable"
    broken = Recorder(httpx.Response(502, text="bad gateway"))
    assert make_client(broken, sleeps).health() == "unreachable"
    assert len(down.requests) == 1 and len(broken.requests) == 1 and sleeps == []


def test_scan_posts_folder_and_sub_with_the_long_timeout() -> None:
    recorder = Recorder(httpx.Response(200, text=""))
    client = make_client(recorder, [], timeout=5, scan_timeout=900)
    client.scan("media", "batch_000001")
    client.scan("media")
    first, second = recorder.requests
    assert first.method == "POST" and first.url.path == "/rest/db/scan"
    assert dict(first.url.params) == {"folder": "media", "sub": "batch_000001"}
    assert dict(second.url.params) == {"folder": "media"}
    assert first.extensions["timeout"]["read"] == 900


def test_db_file_returns_none_on_404_and_the_entry_otherwise() -> None:
    entry = {"global": {"size": 3}, "local": {"size": 3}, "availability": None}
    recorder = Recorder(httpx.Response(404, text="No such object"), ok(entry))
    client = make_client(recorder, [])
    assert client.db_file("media", "batch_000001/a b.jpg") is None
    assert client.db_file("media", "batch_000001/x.jpg") == entry
    assert recorder.requests[0].url.params["file"] == "batch_000001/a b.jpg"


MIGRATING = "Database migration in progress"


def migrating() -> httpx.Response:
    """What every call of Syncthing 2 answers during its first start's migration."""
    return httpx.Response(
        200, text=MIGRATING, headers={"Content-Type": "text/plain; charset=utf-8"}
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.scan("media", sub="batch_000001"),
        lambda c: c.ping(),
        lambda c: c.db_file("media", "batch_000001/a.jpg"),
        lambda c: c.folder("media"),
    ],
)
def test_syncthing_2_migration_page_is_starting_not_success(
    call: Callable[[SyncthingClient], object],
) -> None:
    recorder = Recorder(migrating())
    sleeps: list[float] = []
    client = make_client(recorder, sleeps)
    with pytest.raises(SyncthingStarting, match="starting") as info:
        call(client)
    # Unavailable for the callers: recorded, retried later, never taken as done.
    assert isinstance(info.value, SyncthingUnavailable)
    assert info.value.status_code == 200 and MIGRATING in str(info.value)
    assert len(recorder.requests) == 1 and sleeps == []


def test_health_says_starting_during_the_migration() -> None:
    client = make_client(Recorder(migrating()), [])
    assert client.health() == "starting"


def test_an_empty_text_answer_is_still_a_success() -> None:
    # Syncthing 1.x answers a scan with an empty text/plain 200.
    recorder = Recorder(
        httpx.Response(200, text="", headers={"Content-Type": "text/plain"})
    )
    make_client(recorder, []).scan("media")
    assert len(recorder.requests) == 1


def test_syncthing_2_forbidden_names_the_real_status() -> None:
    recorder = Recorder(httpx.Response(403, text="Forbidden\n"))
    client = make_client(recorder, [])
    with pytest.raises(SyncthingUnauthorized) as info:
        client.folder("media")
    assert info.value.status_code == 403
    assert "HTTP 403: Forbidden" in str(info.value)
    assert client.health() == "unauthorized"


def test_folder_takes_a_quick_timeout_and_no_retries() -> None:
    recorder = Recorder(httpx.Response(500, text="busy"))
    sleeps: list[float] = []
    client = make_client(recorder, sleeps)
    with pytest.raises(SyncthingUnavailable, match="HTTP 500"):
        client.folder("media", timeout=0.5, retries=0)
    assert len(recorder.requests) == 1 and sleeps == []
    assert recorder.requests[0].extensions["timeout"]["read"] == 0.5


def test_put_device_and_folder_send_json_to_the_right_paths() -> None:
    recorder = Recorder(httpx.Response(200, text=""))
    client = make_client(recorder, [])
    client.put_device({"deviceID": "ABC-DEF", "addresses": ["tcp://127.0.0.1:1"]})
    client.put_folder({"id": "my folder", "path": "/x"})
    device, folder = recorder.requests
    assert (device.method, device.url.path) == ("PUT", "/rest/config/devices/ABC-DEF")
    assert json.loads(device.content)["addresses"] == ["tcp://127.0.0.1:1"]
    assert folder.url.raw_path == b"/rest/config/folders/my%20folder"


def test_closed_client_refuses_requests() -> None:
    recorder = Recorder(ok({"ping": "pong"}))
    with make_client(recorder, []) as client:
        client.ping()
    with pytest.raises(RuntimeError):
        client.ping()


def test_an_invalid_url_fails_at_once_as_a_syncthing_error() -> None:
    sleeps: list[float] = []
    client = SyncthingClient("ftp://127.0.0.1:1", KEY, sleep=sleeps.append)
    with pytest.raises(SyncthingError, match="invalid Syncthing URL") as info:
        client.ping()
    assert not isinstance(info.value, SyncthingUnavailable) and sleeps == []
