"""`media-pipeline run` as a real subprocess: health, CLI, SIGTERM, kill -9 and restart."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.conftest import base_config, wait_until
from tests.pipeline.mediafixtures import make_jpeg

ROOT = Path(__file__).resolve().parents[2]


def cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


@contextmanager
def running(config: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = yaml.safe_load(config.read_text())["server"]["port"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "-c", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return False

    try:
        wait_until(up, timeout=30, interval=0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def write(tmp_path: Path, **overrides: Any) -> Path:
    raw = base_config(
        tmp_path, watcher={"enabled": True, "settle_seconds": 0.2}, **overrides
    )
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_run_answers_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = write(tmp_path)
    with running(config) as (proc, url):
        health = httpx.get(f"{url}/health").json()["data"]
        assert health["components"]["database"] == "ok"
        assert health["components"]["watcher"] in ("inotify", "polling")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - started < 10
        output = proc.stdout.read() if proc.stdout else ""
        assert "Traceback" not in output
    log = tmp_path / "log" / "media-pipeline.log"
    record = json.loads(log.read_text().splitlines()[0])
    assert "record" in record and "text" in record


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    with running(write(tmp_path)) as (proc, _):
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_status_trigger_and_version(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        auth={"enabled": True, "api_key": "t" * 32},
        intake={"media_only": True},
    )
    assert cli("--version").stdout.strip().startswith("media-pipeline ")
    missing = cli("status", "-c", str(config))
    assert missing.returncode == 1 and "no database yet" in missing.stderr
    with running(config) as (proc, url):
        make_jpeg(tmp_path / "inbox" / "a.jpg", seed=1)
        wait_until(
            lambda: "UNIQUE" in cli("status", "-c", str(config)).stdout, timeout=20
        )
        triggered = cli("trigger", "batch", "-c", str(config))
        assert triggered.returncode == 0, triggered.stderr
        assert triggered.stdout.startswith("batch: batch_000001 created, 1 files (")
        status = json.loads(cli("status", "--json", "-c", str(config)).stdout)
        assert status["files"]["by_status"]["BATCHED"] == 1
        assert status["batches"]["by_status"]["CREATED"] == 1
        # trigger follows the job and ends with one summary line.
        sorted_ = cli("trigger", "sort", "-c", str(config))
        assert sorted_.returncode == 0, sorted_.stderr
        assert re.fullmatch(r"sort: 1 sorted, 0 errors in \d+\.\d s\n", sorted_.stdout)
        scan = cli("trigger", "dedup", "--no-wait", "-c", str(config))
        assert scan.returncode == 0
        first = json.loads(scan.stdout)["data"]["job"]
        assert first["kind"] == "dedup"
        key = {"X-API-Key": "t" * 32}
        wait_until(
            lambda: httpx.get(f"{url}/api/jobs/{first['id']}", headers=key).json()[
                "data"
            ]["job"]["status"]
            == "DONE"
        )
        (tmp_path / "inbox" / "notes.txt").write_text("not a photo")
        scanned = cli("trigger", "dedup", "-c", str(config))
        assert scanned.returncode == 0, scanned.stderr
        assert "1 taken: 0 unique, 0 duplicates, 1 skipped, 0 errors" in scanned.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    down = cli("trigger", "dedup", "-c", str(config))
    assert down.returncode == 1 and "cannot reach the daemon" in down.stderr
    bad = cli("run", "-c", str(tmp_path / "nope.yaml"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_config_from_environment_variable(tmp_path: Path) -> None:
    config = write(tmp_path)
    result = cli("check-config", env={"MEDIA_PIPELINE_CONFIG": str(config)})
    assert result.returncode == 0 and result.stdout.strip() == "config OK"


def decided(db: Path) -> int:
    """Rows past the dedup decision, read from the daemon's database (read-only)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute(
            "SELECT count(*) FROM files WHERE status NOT IN ('NEW', 'HASHED')"
        ).fetchone()
    except sqlite3.OperationalError:  # the schema is still being created
        return 0
    finally:
        con.close()
    return int(row[0])


def test_kill_9_during_ingest_then_restart_loses_nothing(tmp_path: Path) -> None:
    """Every byte that enters the inbox ends up exactly once somewhere, after kill -9."""
    # One worker and camera-sized frames keep ingest busy long enough to be caught
    # in the middle: the kill waits for that, it does not guess it with a sleep.
    config = write(tmp_path, system={"max_parallel_fs_ops": 1})
    inbox = tmp_path / "inbox"
    staging = tmp_path / "staging"
    expected = {}
    total = 60
    for n in range(total):
        size = (1600, 1200) if n % 2 else (96, 72)
        path = make_jpeg(staging / f"d{n % 5}" / f"p{n}.jpg", seed=n, size=size)
        expected[path.read_bytes()] = path.name
    db = tmp_path / "db.sqlite"
    with running(config) as (proc, _):
        os.rename(staging, inbox / "drop")
        wait_until(lambda: 0 < decided(db) < total, timeout=60, interval=0.005)
        proc.kill()
        proc.wait(10)
    landed = decided(db)
    assert 0 < landed < total, f"the kill did not land mid-ingest ({landed} decided)"
    with running(config) as (proc, url):

        def all_decided() -> bool:
            counts = httpx.get(f"{url}/api/dedup/status").json()["data"]["counts"]
            return counts["unique"] + counts["duplicates"] + counts["errors"] == total

        wait_until(all_decided, timeout=60)
        assert httpx.post(f"{url}/api/batch/create", json={}).status_code == 201
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    found: dict[bytes, list[Path]] = {}
    for folder in ("inbox", "duplicates", "batch", "sorted"):
        for path in (tmp_path / folder).rglob("*.jpg"):
            found.setdefault(path.read_bytes(), []).append(path)
    assert set(found) == set(expected)
    assert all(len(paths) == 1 for paths in found.values())
    assert not list(tmp_path.rglob(".mp-partial-*"))


def test_sd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    """With NOTIFY_SOCKET set the daemon says READY=1, pings the watchdog, says STOPPING=1."""
    import socket as sk

    config = write(tmp_path)
    port = yaml.safe_load(config.read_text())["server"]["port"]
    address = str(tmp_path / "notify.sock")
    receiver = sk.socket(sk.AF_UNIX, sk.SOCK_DGRAM)
    receiver.bind(address)
    receiver.settimeout(0.2)
    messages: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                messages.append(receiver.recv(4096).decode())
            except TimeoutError:
                return messages

    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "-c", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: any("READY=1" in m for m in drain()), timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        ready = next(m for m in messages if "READY=1" in m)
        assert "STATUS=" in ready
        wait_until(lambda: sum("WATCHDOG=1" in m for m in drain()) >= 3, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert any("STOPPING=1" in m for m in drain())
    finally:
        if proc.poll() is None:
            proc.kill()
        receiver.close()
