"""Two real Syncthing instances on 127.0.0.1, paired and sharing one folder.

Use from a test file in tests/integration/ either directly::

    from syncthing_env import SyncthingPair, start_pair, syncthing_pair  # noqa: F401

or, once tests/integration/conftest.py has the line
``from syncthing_env import syncthing_pair  # noqa: F401``, just ask for the
``syncthing_pair`` fixture. ``start_pair(dir)`` returns a started ``SyncthingPair``
(a context manager) for module-scoped fixtures.

Layout: ``local`` shares ``folder_id`` as ``sendonly`` from ``pair.local_dir`` (use
it as ``paths.sync_dir``), ``remote`` receives it ``receiveonly`` with
``ignoreDelete`` into ``pair.remote_dir``. Discovery, relays, NAT, usage reporting,
crash reporting and upgrades are off; nothing leaves 127.0.0.1. Each instance runs
with ``--no-restart`` so the PID we start is the only process, and is stopped by
that PID (SIGTERM, then SIGKILL after a deadline).

Works with the Syncthing 1.x CLI (Debian 12 ships 1.19, what CI runs) and the 2.x
one: only flags both accept, the device ID read from the generated ``config.xml``,
``STNODEFAULTFOLDER`` for 1.x. ``SYNCTHING_BIN`` may point at another binary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest

from pipeline.syncthing import SyncthingClient, SyncthingError

SYNCTHING_BIN = os.environ.get("SYNCTHING_BIN", "/usr/bin/syncthing")
DEFAULT_FOLDER_ID = "media"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
# Loaded before any fork: the child must not need the loader's locks.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """In the child: SIGTERM it if pytest dies (kill -9, os._exit on a timeout)."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# Options written into config.xml before the first start: loopback only, quiet.
_OPTIONS = {
    "globalAnnounceEnabled": "false",
    "localAnnounceEnabled": "false",
    "relaysEnabled": "false",
    "natEnabled": "false",
    "urAccepted": "-1",
    "urSeen": "3",
    "autoUpgradeIntervalH": "0",
    "startBrowser": "false",
    "crashReportingEnabled": "false",
    "stunKeepaliveStartS": "0",
    "stunKeepaliveMinS": "0",
    "reconnectionIntervalS": "1",
    "progressUpdateIntervalS": "1",
    "setLowPriority": "false",
}


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.1,
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test at the deadline.

    Exceptions from ``probe`` count as "not yet" until the deadline, then the last
    one is reported.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
        except Exception as exc:  # any failure means "not yet"
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}: {last!r}"
            )
        time.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (small race, covered by retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SyncthingInstance:
    """One Syncthing process: its home, ports, key, device ID and shared folder."""

    name: str
    home: Path
    folder_path: Path
    api_key: str
    device_id: str
    gui_port: int = 0
    listen_port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gui_port}"

    @property
    def listen_address(self) -> str:
        return f"tcp://127.0.0.1:{self.listen_port}"

    @property
    def log_path(self) -> Path:
        return self.home / "syncthing.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, **kwargs: Any) -> SyncthingClient:
        """A new client for this instance (caller closes it); fast retries."""
        kwargs.setdefault("retries", 2)
        kwargs.setdefault("backoff_base", 0.05)
        kwargs.setdefault("backoff_max", 0.2)
        return SyncthingClient(self.url, self.api_key, **kwargs)

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start ``syncthing serve`` and wait until it answers a ping."""
        for attempt in range(START_ATTEMPTS):
            if not self.gui_port or attempt:
                # First start, or the last ports were taken by someone else.
                self.gui_port, self.listen_port = free_port(), free_port()
                self._write_config()
            self._spawn()
            try:
                self._wait_up(timeout)
                return
            except AssertionError:
                self.stop()
                if attempt == START_ATTEMPTS - 1:
                    raise AssertionError(
                        f"syncthing {self.name} did not start; log tail:\n"
                        f"{self.log_tail()}"
                    ) from None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the process we started: SIGTERM, then SIGKILL after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # Its own session, so the group id is the PID we started.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _spawn(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home / "userhome"),
            "STNODEFAULTFOLDER": "1",
            "STNOUPGRADE": "1",
            "STNORESTART": "1",
            # Run Syncthing's inner process directly: without its monitor parent the
            # PID we hold is the one that serves, and SIGTERM reaches it.
            "STMONITORED": "yes",
            "LANG": "C.UTF-8",
        }
        (self.home / "userhome").mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                serve_command(self.home),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _wait_up(self, timeout: float) -> None:
        with self.client(retries=0, timeout=2) as client:

            def up() -> bool:
                if not self.running:
                    raise AssertionError("process exited")
                try:
                    client.ping()
                except SyncthingError:
                    return False
                return True

            deadline = time.monotonic() + timeout
            while not up():
                if time.monotonic() >= deadline:
                    raise AssertionError("ping deadline")
                time.sleep(0.1)

    def _write_config(self) -> None:
        path = self.home / "config.xml"
        tree = ET.parse(path)
        root = tree.getroot()
        gui = _child(root, "gui")
        gui.set("tls", "false")
        _child(gui, "address").text = f"127.0.0.1:{self.gui_port}"
        _child(gui, "apikey").text = self.api_key
        options = _child(root, "options")
        for old in options.findall("listenAddress"):
            options.remove(old)
        ET.SubElement(options, "listenAddress").text = self.listen_address
        for key, value in _OPTIONS.items():
            _child(options, key).text = value
        for device in root.findall("device"):
            if device.get("id") == self.device_id:
                device.set("name", self.name)
        tree.write(path)


def _child(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.find(tag)
    return found if found is not None else ET.SubElement(parent, tag)


# Flags and subcommands accepted by both Syncthing 1.x (Debian 12: 1.19) and 2.x.
# Syncthing 2 removed ``generate --no-default-folder`` (it creates no default folder;
# 1.x is told by STNODEFAULTFOLDER instead), renamed ``--skip-port-probing`` (probing
# only picks the default GUI port, which _write_config replaces anyway) and stopped
# printing "Device ID:", so the ID is read from the generated config.xml.
GENERATE_ARGS = ("generate", "--home")
SERVE_ARGS = ("serve", "--home", "--no-browser", "--no-upgrade", "--no-restart")


def generate_command(home: Path) -> list[str]:
    """``syncthing generate`` for a new home, in a form both major versions accept."""
    return [SYNCTHING_BIN, GENERATE_ARGS[0], GENERATE_ARGS[1], str(home)]


def serve_command(home: Path) -> list[str]:
    """``syncthing serve`` for ``home``, in a form both major versions accept."""
    return [SYNCTHING_BIN, SERVE_ARGS[0], SERVE_ARGS[1], str(home), *SERVE_ARGS[2:]]


def device_id_from_config(config: Path) -> str:
    """This instance's device ID: the one top-level ``<device>`` of a new config.xml.

    ``<defaults><device id="">`` (1.19+) is a template, not a device, and is skipped.
    """
    root = ET.parse(config).getroot()
    ids = [d.get("id", "") for d in root.findall("device")]
    ids = [i for i in ids if re.fullmatch(r"[A-Z2-7]{7}(-[A-Z2-7]{7}){7}", i)]
    if len(ids) != 1:
        raise AssertionError(f"expected one device in {config}, found {ids}")
    return ids[0]


def generate_instance(base: Path, name: str) -> SyncthingInstance:
    """``syncthing generate`` a home under ``base/name`` (keys, config), not started."""
    home = base / name / "home"
    folder_path = base / name / "folder"
    home.mkdir(parents=True)
    folder_path.mkdir(parents=True)
    # Syncthing refuses to run a folder whose marker is missing.
    (folder_path / ".stfolder").mkdir()
    (home / "userhome").mkdir()
    subprocess.run(
        generate_command(home),
        capture_output=True,
        text=True,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home / "userhome"),
            # 1.x: no default folder on first start (2.x never makes one).
            "STNODEFAULTFOLDER": "1",
        },
        timeout=60,
        check=True,
    )
    return SyncthingInstance(
        name=name,
        home=home,
        folder_path=folder_path,
        api_key=secrets.token_urlsafe(24),
        device_id=device_id_from_config(home / "config.xml"),
    )


class SyncthingPair:
    """A started local (sendonly) and remote (receiveonly, ignoreDelete) pair."""

    def __init__(
        self, local: SyncthingInstance, remote: SyncthingInstance, folder_id: str
    ) -> None:
        self.local = local
        self.remote = remote
        self.folder_id = folder_id

    @property
    def local_dir(self) -> Path:
        """The shared folder on the local side (the pipeline's ``sync_dir``)."""
        return self.local.folder_path

    @property
    def remote_dir(self) -> Path:
        """Where the remote writes what it received."""
        return self.remote.folder_path

    @property
    def url(self) -> str:
        """The local instance's REST address (``syncthing.url``)."""
        return self.local.url

    @property
    def api_key(self) -> str:
        """The local instance's key (``syncthing.api_key``)."""
        return self.local.api_key

    def client(self, **kwargs: Any) -> SyncthingClient:
        """A new client for the local instance; the caller closes it."""
        return self.local.client(**kwargs)

    def pair(self) -> None:
        """Make each instance know the other and share the folder both ways."""
        for me, peer, folder in (
            (self.local, self.remote, self._local_folder()),
            (self.remote, self.local, self._remote_folder()),
        ):
            with me.client() as client:
                client.put_device(
                    {
                        "deviceID": peer.device_id,
                        "name": peer.name,
                        "addresses": [peer.listen_address],
                        "compression": "never",
                        "autoAcceptFolders": False,
                    }
                )
                client.put_folder(folder)

    def wait_connected(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the local instance reports a live connection to the remote."""
        with self.client() as client:

            def connected() -> bool:
                conns = client.connections().get("connections", {})
                return bool(conns.get(self.remote.device_id, {}).get("connected"))

            wait_for("local to connect to remote", connected, timeout)

    def stop_remote(self) -> None:
        """Stop the remote instance (its home and ports are kept for a restart)."""
        self.remote.stop()

    def start_remote(self, timeout: float = START_TIMEOUT) -> None:
        """Restart the remote with the same home and wait until the pair reconnects."""
        if not self.remote.running:
            port = self.remote.gui_port
            self.remote.start(timeout)
            if self.remote.gui_port != port:
                # Its ports moved (taken meanwhile): tell the local side where it is.
                self.pair()
        self.wait_connected(timeout)

    def close(self) -> None:
        """Stop both instances; safe to call twice."""
        try:
            self.remote.stop()
        finally:
            self.local.stop()

    def __enter__(self) -> SyncthingPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _local_folder(self) -> dict[str, Any]:
        return {
            "id": self.folder_id,
            "label": self.folder_id,
            "path": str(self.local.folder_path),
            "type": "sendonly",
            "devices": [
                {"deviceID": self.local.device_id},
                {"deviceID": self.remote.device_id},
            ],
            "rescanIntervalS": 3600,
            # The pipeline asks for scans itself; a watcher would race the tests.
            "fsWatcherEnabled": False,
        }

    def _remote_folder(self) -> dict[str, Any]:
        return {
            "id": self.folder_id,
            "label": self.folder_id,
            "path": str(self.remote.folder_path),
            "type": "receiveonly",
            "ignoreDelete": True,
            "devices": [
                {"deviceID": self.remote.device_id},
                {"deviceID": self.local.device_id},
            ],
            "rescanIntervalS": 3600,
            "fsWatcherEnabled": False,
            "pullerPauseS": 1,
        }


def start_pair(
    base: Path,
    *,
    folder_id: str = DEFAULT_FOLDER_ID,
    timeout: float = START_TIMEOUT,
) -> SyncthingPair:
    """Generate, configure, start and pair two instances under ``base``.

    Returns once both answer and are connected. On any failure both are stopped
    before the error propagates; otherwise the caller must ``close()`` the pair.
    """
    local = generate_instance(base, "local")
    remote = generate_instance(base, "remote")
    pair = SyncthingPair(local, remote, folder_id)
    try:
        local.start(timeout)
        remote.start(timeout)
        pair.pair()
        pair.wait_connected(timeout)
    except BaseException:
        pair.close()
        raise
    return pair


@pytest.fixture
def syncthing_pair(tmp_path: Path) -> Iterator[SyncthingPair]:
    """A connected Syncthing pair in ``tmp_path/syncthing``; stopped afterwards."""
    with start_pair(tmp_path / "syncthing") as pair:
        yield pair
