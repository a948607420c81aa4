"""sd_notify against real unix datagram sockets (filesystem and abstract)."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger

from daemon.notify import Notifier, WatchdogThread

DEADLINE_SECONDS = 10.0
# Linux limit for sun_path is 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 100


def wait_for(condition: Callable[[], bool], timeout: float = DEADLINE_SECONDS) -> None:
    """Poll ``condition`` until true; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met before the deadline")
        time.sleep(0.01)


class Receiver:
    """The service manager's side: a bound AF_UNIX datagram socket, messages parsed."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value
        self.messages: list[dict[str, str]] = []

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def drain(self) -> list[dict[str, str]]:
        """Read every datagram already queued (non-blocking) into ``messages``."""
        self.sock.setblocking(False)
        try:
            while True:
                try:
                    data = self.sock.recv(4096)
                except BlockingIOError:
                    break
                self.messages.append(parse(data))
        finally:
            self.sock.setblocking(True)
        return self.messages

    def wait_for_message(
        self, predicate: Callable[[dict[str, str]], bool]
    ) -> dict[str, str]:
        found: list[dict[str, str]] = []

        def seen() -> bool:
            found.extend(m for m in self.drain() if predicate(m) and m not in found)
            return bool(found)

        wait_for(seen)
        return found[0]

    def count(self, key: str) -> int:
        return sum(1 for m in self.drain() if key in m)


def parse(data: bytes) -> dict[str, str]:
    text = data.decode("utf-8")
    assert text.endswith("\n"), f"message must end with a newline: {text!r}"
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        assert sep == "=", f"not a KEY=value line: {line!r}"
        fields[key] = value
    return fields


def _short_dir(tmp_path: Path) -> Path:
    if len(str(tmp_path / "n.sock")) < MAX_SOCKET_PATH:
        return tmp_path
    return Path(tempfile.mkdtemp(prefix="mpn"))


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    path = _short_dir(tmp_path) / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    try:
        yield Receiver(sock, str(path))
    finally:
        sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"media-pipeline-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield Receiver(sock, "@" + name)
    finally:
        sock.close()


@pytest.fixture
def warnings_log() -> Iterator[list[str]]:
    records: list[str] = []
    sink_id = logger.add(lambda m: records.append(str(m)), level="WARNING")
    try:
        yield records
    finally:
        logger.remove(sink_id)


def test_ready_status_stopping_payloads(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env())

    notifier.ready("recovered 3 files")
    notifier.status("12 files, 1 batch syncing")
    notifier.stopping()

    wait_for(lambda: len(receiver.drain()) >= 3)
    assert receiver.messages == [
        {"READY": "1", "STATUS": "recovered 3 files"},
        {"STATUS": "12 files, 1 batch syncing"},
        {"STOPPING": "1"},
    ]


def test_ready_without_status_sends_only_ready(receiver: Receiver) -> None:
    Notifier.from_env(receiver.env()).ready()

    assert receiver.wait_for_message(lambda m: "READY" in m) == {"READY": "1"}


def test_abstract_socket(abstract_receiver: Receiver) -> None:
    notifier = Notifier.from_env(abstract_receiver.env())

    assert notifier.enabled
    assert notifier.send(READY="1", STATUS="up") is True
    message = abstract_receiver.wait_for_message(lambda m: "READY" in m)
    assert message == {"READY": "1", "STATUS": "up"}


def test_newlines_in_values_cannot_inject_fields(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env())

    notifier.status("line one\nWATCHDOG=1\r\nend")

    message = receiver.wait_for_message(lambda m: "STATUS" in m)
    assert set(message) == {"STATUS"}
    assert "\n" not in message["STATUS"]


def test_extend_timeout_sends_microseconds(receiver: Receiver) -> None:
    Notifier.from_env(receiver.env()).extend_timeout(90)

    message = receiver.wait_for_message(lambda m: "EXTEND_TIMEOUT_USEC" in m)
    assert message == {"EXTEND_TIMEOUT_USEC": "90000000"}


def test_no_notify_socket_is_a_no_op(warnings_log: list[str]) -> None:
    notifier = Notifier.from_env({"WATCHDOG_USEC": "1000000"})

    assert not notifier.enabled
    assert notifier.send(READY="1") is False
    notifier.ready("x")
    notifier.status("x")
    notifier.stopping()
    assert notifier.watchdog() is False
    assert notifier.watchdog_interval() is None
    thread = WatchdogThread(notifier, lambda: True, lambda: "status", interval=0.01)
    thread.start()
    thread.join(DEADLINE_SECONDS)
    assert not thread.is_alive()
    assert warnings_log == []


def test_from_env_defaults_to_process_environment(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.env_value)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)

    notifier = Notifier.from_env()

    assert notifier.watchdog_interval() == 2.0
    assert notifier.send(STATUS="from os.environ")
    assert receiver.wait_for_message(lambda m: "STATUS" in m) == {
        "STATUS": "from os.environ"
    }
    assert os.environ["NOTIFY_SOCKET"] == receiver.env_value


@pytest.mark.parametrize("raw", ["vsock:2:1234", "relative/path", "@"])
def test_unsupported_socket_address_disables(raw: str, warnings_log: list[str]) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": raw})

    assert not notifier.enabled
    assert notifier.send(READY="1") is False
    assert len(warnings_log) == 1


def test_send_failure_never_raises_and_logs_once(
    tmp_path: Path, warnings_log: list[str]
) -> None:
    missing = _short_dir(tmp_path) / "gone.sock"
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(missing)})

    assert notifier.send(READY="1") is False
    notifier.status("still fine")
    notifier.stopping()

    assert len(warnings_log) == 1
    assert "failed" in warnings_log[0]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "200000"}, 0.1),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "abc"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(
    receiver: Receiver, env: dict[str, str], expected: float | None
) -> None:
    notifier = Notifier.from_env(receiver.env(**env))

    assert notifier.watchdog_interval() == expected
    assert notifier.watchdog() is (expected is not None)


class Health:
    """A switchable is_healthy() that records what each call answered."""

    def __init__(self) -> None:
        self.healthy = True
        self.answers: list[bool] = []
        self.lock = threading.Lock()

    def __call__(self) -> bool:
        with self.lock:
            self.answers.append(self.healthy)
            return self.healthy

    def count(self, value: bool) -> int:
        with self.lock:
            return self.answers.count(value)


def test_watchdog_pings_only_while_healthy(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env(WATCHDOG_USEC="100000"))
    health = Health()
    thread = WatchdogThread(notifier, health, lambda: "42 files")
    assert thread.interval == 0.05
    assert thread.daemon

    thread.start()
    try:
        wait_for(lambda: receiver.count("WATCHDOG") >= 3)
        health.healthy = False
        wait_for(lambda: health.count(False) >= 3)
    finally:
        thread.stop()
    assert not thread.is_alive()

    receiver.drain()
    pings = [m for m in receiver.messages if "WATCHDOG" in m]
    # One ping per healthy answer and none for the (at least 3) unhealthy ones.
    assert len(pings) == health.count(True)
    assert health.answers[-1] is False
    statuses = [m["STATUS"] for m in receiver.messages if "STATUS" in m]
    assert statuses[0] == "42 files"
    assert statuses[-1].startswith("unhealthy")


def test_watchdog_resumes_when_healthy_again(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env(WATCHDOG_USEC="100000"))
    health = Health()
    health.healthy = False
    thread = WatchdogThread(notifier, health)

    thread.start()
    try:
        receiver.wait_for_message(lambda m: m.get("STATUS", "").startswith("unhealthy"))
        assert receiver.count("WATCHDOG") == 0
        health.healthy = True
        receiver.wait_for_message(lambda m: "WATCHDOG" in m)
        # The first healthy tick also replaces the "unhealthy" status.
        receiver.wait_for_message(lambda m: m.get("STATUS") == "running")
    finally:
        thread.stop()


def test_health_check_exception_counts_as_unhealthy(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env(WATCHDOG_USEC="100000"))
    calls: list[int] = []

    def broken() -> bool:
        calls.append(1)
        raise RuntimeError("stage registry gone")

    thread = WatchdogThread(notifier, broken)
    thread.start()
    try:
        wait_for(lambda: len(calls) >= 3)
    finally:
        thread.stop()

    assert receiver.count("WATCHDOG") == 0
    assert any(m.get("STATUS", "").startswith("unhealthy") for m in receiver.messages)


def test_watchdog_pid_mismatch_sends_no_pings(receiver: Receiver) -> None:
    env = receiver.env(WATCHDOG_USEC="100000", WATCHDOG_PID=str(os.getpid() + 1))
    notifier = Notifier.from_env(env)
    health = Health()
    thread = WatchdogThread(notifier, health, lambda: "ok", interval=0.05)

    thread.start()
    try:
        wait_for(lambda: health.count(True) >= 3)
    finally:
        thread.stop()

    receiver.drain()
    assert receiver.count("WATCHDOG") == 0
    assert {"STATUS": "ok"} in receiver.messages


def test_failing_status_text_keeps_pinging_and_logs_once(
    receiver: Receiver, warnings_log: list[str]
) -> None:
    notifier = Notifier.from_env(receiver.env(WATCHDOG_USEC="100000"))
    health = Health()

    def status_text() -> str:
        raise RuntimeError("database is locked")

    thread = WatchdogThread(notifier, health, status_text)
    thread.start()
    try:
        wait_for(lambda: receiver.count("WATCHDOG") >= 3)
    finally:
        thread.stop()

    assert len([r for r in warnings_log if "status_text() raised" in r]) == 1


def test_status_sent_only_when_it_changes(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env(WATCHDOG_USEC="100000"))
    texts = iter(["a", "a", "a", "b"])
    current = ["a"]

    def status_text() -> str:
        current[0] = next(texts, current[0])
        return current[0]

    health = Health()
    thread = WatchdogThread(notifier, health, status_text)
    thread.start()
    try:
        wait_for(lambda: health.count(True) >= 6)
    finally:
        thread.stop()

    statuses = [m["STATUS"] for m in receiver.drain() if "STATUS" in m]
    assert statuses == ["a", "b"]


def test_stop_joins_promptly_mid_wait(receiver: Receiver) -> None:
    notifier = Notifier.from_env(receiver.env(WATCHDOG_USEC="7200000000"))
    thread = WatchdogThread(notifier, lambda: True)
    assert thread.interval == 3600.0

    thread.start()
    receiver.wait_for_message(lambda m: "WATCHDOG" in m)
    thread.stop()

    assert not thread.is_alive()


def test_stop_before_start_is_harmless(receiver: Receiver) -> None:
    thread = WatchdogThread(Notifier.from_env(receiver.env()), lambda: True)
    thread.stop()
    assert not thread.is_alive()


def test_no_watchdog_and_no_status_means_nothing_to_do(receiver: Receiver) -> None:
    thread = WatchdogThread(Notifier.from_env(receiver.env()), lambda: True)
    assert thread.interval is None
    thread.start()
    thread.join(DEADLINE_SECONDS)
    assert not thread.is_alive()


def test_rejects_non_positive_interval(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="positive"):
        WatchdogThread(Notifier.from_env(receiver.env()), lambda: True, interval=0)
