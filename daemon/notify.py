"""systemd sd_notify: readiness, status, watchdog keep-alive and stop notices.

Speaks the datagram protocol of sd_notify(3) on ``$NOTIFY_SOCKET`` directly (no
dependency on the systemd package). Outside systemd (no ``NOTIFY_SOCKET``) every call
is a cheap no-op, so the daemon can call it unconditionally.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Mapping

from loguru import logger

# A send must never stall the daemon: systemd drains the socket at once, so a full
# queue means something is badly wrong and dropping the message is the right call.
_SEND_TIMEOUT_SECONDS = 1.0
# Without a watchdog, STATUS= is still refreshed this often when a status_text is given.
_STATUS_ONLY_INTERVAL_SECONDS = 30.0
_JOIN_TIMEOUT_SECONDS = 5.0

_log = logger.bind(event="sd_notify")


def _socket_address(raw: str) -> str | None:
    """Map ``$NOTIFY_SOCKET`` to an AF_UNIX address; None for unsupported forms.

    ``@name`` is a Linux abstract socket (leading NUL byte); ``/path`` a filesystem one.
    """
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    if raw.startswith("/"):
        return raw
    return None


def _parse_watchdog_usec(environ: Mapping[str, str]) -> int | None:
    """Watchdog timeout in microseconds meant for this process, or None.

    Follows sd_watchdog_enabled(3): ``WATCHDOG_USEC`` must be a positive integer and
    ``WATCHDOG_PID``, when set, must be our own pid (otherwise the watchdog belongs to
    another process, e.g. our parent, and we must not ping for it).
    """
    raw_usec = environ.get("WATCHDOG_USEC", "").strip()
    if not raw_usec:
        return None
    try:
        usec = int(raw_usec)
    except ValueError:
        _log.warning("ignoring invalid WATCHDOG_USEC={!r}", raw_usec)
        return None
    if usec <= 0:
        return None
    raw_pid = environ.get("WATCHDOG_PID", "").strip()
    if raw_pid:
        try:
            pid = int(raw_pid)
        except ValueError:
            _log.warning("ignoring watchdog: invalid WATCHDOG_PID={!r}", raw_pid)
            return None
        if pid != os.getpid():
            _log.debug("watchdog is for pid {}, not {}: not pinging", pid, os.getpid())
            return None
    return usec


def _clean_value(value: str) -> str:
    """One protocol line per field: a newline inside a value would start a new field."""
    return str(value).replace("\r", " ").replace("\n", " ")


class Notifier:
    """Sends sd_notify messages; a no-op when not started by systemd with Type=notify.

    Thread-safe (each send uses its own socket). Sending never raises: a failure is
    logged once as a warning (later ones at debug level) and reported as False.
    """

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = address
        self._watchdog_usec = watchdog_usec if address else None
        self._failure_logged = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """Build from ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID``.

        ``environ`` defaults to ``os.environ``; the environment is not modified.
        """
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "").strip()
        if not raw:
            return cls(None)
        address = _socket_address(raw)
        if address is None:
            _log.warning("unsupported NOTIFY_SOCKET {!r}: notifications disabled", raw)
            return cls(None)
        return cls(address, _parse_watchdog_usec(env))

    @property
    def enabled(self) -> bool:
        """True when there is a notification socket to talk to."""
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; True if the socket took it.

        Newlines inside values are replaced by spaces. False when disabled, when no
        field is given, or when the send failed.
        """
        if self._address is None or not fields:
            return False
        payload = "".join(f"{key}={_clean_value(val)}\n" for key, val in fields.items())
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.settimeout(_SEND_TIMEOUT_SECONDS)
                sock.sendto(payload.encode("utf-8"), self._address)
        except OSError as exc:
            self._log_failure(exc, fields)
            return False
        return True

    def _log_failure(self, exc: OSError, fields: Mapping[str, str]) -> None:
        keys = ",".join(fields)
        if self._failure_logged:
            _log.debug("sd_notify send of {} failed: {}", keys, exc)
            return
        self._failure_logged = True
        _log.warning(
            "sd_notify send of {} failed: {} (further failures logged at debug level)",
            keys,
            exc,
        )

    def ready(self, status: str = "") -> None:
        """Tell systemd start-up is complete (recovery done, all components running)."""
        if status:
            self.send(READY="1", STATUS=status)
        else:
            self.send(READY="1")

    def status(self, text: str) -> None:
        """Set the one-line status shown by ``systemctl status``."""
        self.send(STATUS=text)

    def stopping(self) -> None:
        """Tell systemd a shutdown has begun (call first thing on SIGTERM)."""
        self.send(STOPPING="1")

    def watchdog(self) -> bool:
        """Send one ``WATCHDOG=1`` keep-alive; False when no watchdog is expected."""
        if self._watchdog_usec is None:
            return False
        return self.send(WATCHDOG="1")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for ``seconds`` more before a start/stop timeout (EXTEND_TIMEOUT_USEC).

        For a start-up recovery that may outlast ``TimeoutStartSec=``: call it
        repeatedly, each time promising the next sign of progress within ``seconds``.
        """
        self.send(EXTEND_TIMEOUT_USEC=str(max(0, int(seconds * 1_000_000))))

    def watchdog_interval(self) -> float | None:
        """Seconds between pings (half of ``WATCHDOG_USEC``); None if no watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2_000_000


class WatchdogThread(threading.Thread):
    """Daemon thread that pings the systemd watchdog while the pipeline is healthy.

    Every ``interval`` seconds (default: ``notifier.watchdog_interval()``) it calls
    ``is_healthy()``; only when that returns True is ``WATCHDOG=1`` sent, so a dead or
    hung stage makes systemd kill and restart the service. ``is_healthy`` should check
    that the worker threads are alive and, ideally, making progress; an exception from
    it counts as unhealthy. ``status_text()``, if given, is sent as ``STATUS=`` whenever
    it changes. With no watchdog configured but a ``status_text``, STATUS is still
    refreshed (every 30 s unless ``interval`` is given); with neither, or without
    ``NOTIFY_SOCKET``, the thread ends at once.
    """

    def __init__(
        self,
        notifier: Notifier,
        is_healthy: Callable[[], bool],
        status_text: Callable[[], str] | None = None,
        interval: float | None = None,
    ) -> None:
        super().__init__(name="sd-watchdog", daemon=True)
        self._notifier = notifier
        self._is_healthy = is_healthy
        self._status_text = status_text
        self._pings = notifier.watchdog_interval() is not None
        self._interval = self._pick_interval(interval)
        self._stop_event = threading.Event()
        self._healthy = True
        self._last_status: str | None = None
        self._status_failed = False

    def _pick_interval(self, interval: float | None) -> float | None:
        if interval is not None:
            if interval <= 0:
                raise ValueError(f"watchdog interval must be positive (got {interval})")
            return interval
        watchdog_interval = self._notifier.watchdog_interval()
        if watchdog_interval is not None:
            return watchdog_interval
        return _STATUS_ONLY_INTERVAL_SECONDS if self._status_text else None

    @property
    def interval(self) -> float | None:
        """Seconds between ticks, or None when the thread has nothing to do."""
        return self._interval if self._notifier.enabled else None

    def run(self) -> None:
        interval = self.interval
        if interval is None:
            return
        logger.bind(event="watchdog", interval=interval, pings=self._pings).debug(
            "watchdog thread started: tick every {:.1f}s", interval
        )
        while True:
            self._tick()
            if self._stop_event.wait(interval):
                return

    def stop(self) -> None:
        """Stop ticking and join (returns within a few seconds even mid-wait)."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(_JOIN_TIMEOUT_SECONDS)

    def _tick(self) -> None:
        healthy = self._check_health()
        if healthy and self._pings:
            # Ping before computing the status: status_text() may query the database,
            # and a slow query must not delay the keep-alive.
            self._notifier.send(WATCHDOG="1")
        status = self._current_status(healthy)
        if status is not None and status != self._last_status:
            self._notifier.send(STATUS=status)
            self._last_status = status

    def _check_health(self) -> bool:
        log = logger.bind(event="watchdog")
        try:
            healthy = bool(self._is_healthy())
        except Exception:
            if self._healthy:
                log.exception("health check raised; treating the pipeline as unhealthy")
            healthy = False
        if self._healthy and not healthy:
            if self._pings:
                log.error("pipeline unhealthy: withholding watchdog pings")
            else:
                log.error("pipeline unhealthy (no systemd watchdog to act on it)")
        elif healthy and not self._healthy:
            log.warning("pipeline healthy again: watchdog pings resumed")
        self._healthy = healthy
        return healthy

    def _current_status(self, healthy: bool) -> str | None:
        text = ""
        if self._status_text is not None:
            try:
                text = self._status_text()
                self._status_failed = False
            except Exception:
                if not self._status_failed:
                    logger.bind(event="watchdog").exception("status_text() raised")
                self._status_failed = True
        if healthy:
            # After an unhealthy spell, overwrite the "unhealthy" status even when
            # there is no status text of our own.
            return text or ("running" if self._last_status is not None else None)
        return "unhealthy: watchdog pings withheld" + (f"; {text}" if text else "")
