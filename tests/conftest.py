"""Shared fixtures: temp configs, a started pipeline context, polling with deadlines."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.config import deep_merge
from pipeline.context import FOLDERS

# Every database the tests open (daemons started as subprocesses too) rejects a
# status change that pipeline/states.py does not allow.
os.environ.setdefault("MEDIA_PIPELINE_STRICT_STATES", "1")


def wait_until(
    cond: Callable[[], Any], timeout: float = 30, interval: float = 0.02
) -> Any:
    """Poll `cond` until it returns something truthy; fail the test after `timeout`.

    The deadline only bounds how long a failing test takes to fail: generous, so a
    2-core machine under load never turns a slow success into a failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {cond}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_as_nobody(
    cmd: list[str], timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` from the checkout as the unprivileged `nobody` (when we are root).

    Root ignores file modes, so permission failures need another user. nobody
    cannot write coverage data into the checkout: the child measures nothing.
    """
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=Path(__file__).parents[1],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("COV")},
            **env,
        },
    )


def base_config(root: Path, **overrides: Any) -> dict[str, Any]:
    """A config with every folder under `root`, fast timings, no Syncthing, every file."""
    raw: dict[str, Any] = {
        "paths": {name: str(root / name.removesuffix("_dir")) for name in FOLDERS},
        "database": {"path": str(root / "db.sqlite")},
        "server": {"host": "127.0.0.1", "port": free_port()},
        "watcher": {"settle_seconds": 0.2, "rescan_interval_seconds": 600},
        "batch": {"auto_create": False},
        "sort": {"auto": False},
        "syncthing": {"enabled": False},
        # Tests feed arbitrary files (`f1.bin`) through the pipeline; the tests of
        # intake.media_only switch it on themselves.
        "intake": {"media_only": False},
    }
    return deep_merge(raw, overrides)


def write_config(root: Path, **overrides: Any) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(root, **overrides)))
    return path


def add_file(svc: Any, name: str, status: str, size: int = 1000, **fields: Any) -> int:
    """A `files` row as the pipeline would leave it (no file on disk unless made)."""
    from pipeline.models import File

    path = str(Path(svc.settings.paths.inbox) / name)
    return svc.ctx.writer.call(
        lambda: File.create(
            original_path=path,
            rel_path=name,
            current_path=path,
            size=size,
            status=status,
            **fields,
        ).id
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write a config under tmp_path with overrides, return its path."""
    return lambda **overrides: write_config(tmp_path, **overrides)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: a started Service (no HTTP server) from overrides; stopped afterwards."""
    from daemon.config import load
    from daemon.service import Service

    started: list[Service] = []

    def make(**overrides: Any) -> Service:
        kwargs = overrides.pop("_service_kwargs", {})
        overrides.setdefault("watcher", {}).setdefault("enabled", False)
        path = write_config(tmp_path, **overrides)
        svc = Service(load(path, environ={}), **kwargs)
        svc.start()
        started.append(svc)
        return svc

    yield make
    for svc in started:
        svc.stop()


def stray_threads(
    before: set[threading.Thread], timeout: float = 5.0
) -> list[threading.Thread]:
    """Non-daemon threads started since `before` still alive after `timeout` seconds.

    Stopped threads get the grace period to finish; a thread left running by a test
    (a server, a writer, a scheduler never stopped) is what this returns.
    """
    deadline = time.monotonic() + timeout
    while True:
        extra = [
            t
            for t in threading.enumerate()
            if t not in before and not t.daemon and t.is_alive()
        ]
        if not extra or time.monotonic() > deadline:
            return extra
        time.sleep(0.02)


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    extra = stray_threads(before)
    assert not extra, "test left threads running: " + ", ".join(t.name for t in extra)


@pytest.fixture
def small_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Any]]:
    """Factory: a folder on a small real filesystem (see tests/smalldisk.py)."""
    from tests.smalldisk import SmallDisk

    made: list[SmallDisk] = []

    def make(name: str) -> SmallDisk:
        disk = SmallDisk(tmp_path / name, monkeypatch)
        made.append(disk)
        return disk

    yield make
    for disk in made:
        disk.close()
