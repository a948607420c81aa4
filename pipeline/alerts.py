"""Owner notifications: which events are worth a message, episodes, digests, history.

Delivery is an injected boundary (`Deliver`, wired to Apprise in daemon/alerting.py):
this module decides what to say and when, and hands the messages to one background
thread, so a slow or failing receiver never slows a stage.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loguru import logger

EVENTS = ("error", "library_check", "sync_stalled", "disk_low", "recovered")
DIGEST_FILES = 10
HISTORY = 100


@dataclass(frozen=True)
class Outcome:
    """One target's answer: `target` is the URL with its secrets masked."""

    target: str
    delivered: bool
    error: str | None = None


# (title, body) -> one Outcome per configured URL.
Deliver = Callable[[str, str], list[Outcome]]


@dataclass
class Message:
    event: str
    title: str
    body: str


class Alerts:
    """Decides and queues the owner's messages; `settings` is read on every event.

    `settings()` returns the live `notify` section and `public_url()` the dashboard
    link, so a config change applies without a restart.
    """

    def __init__(
        self,
        deliver: Deliver,
        settings: Callable[[], Any],
        public_url: Callable[[], str],
        *,
        retries: int = 4,
        backoff_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self._deliver = deliver
        self._settings = settings
        self._public_url = public_url
        self._retries = retries
        self._backoff = backoff_seconds
        self._now = monotonic
        self._queue: queue.Queue[Message | None] = queue.Queue()
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._lock = threading.Lock()
        self._episode_since: float | None = None  # when the last error message went
        self._pending: list[tuple[int, str]] = []  # failures since then
        self._syncing_since: dict[int, float] = {}  # batch id -> first seen SYNCING
        self._told_batches: set[int] = set()
        self._unreachable_since: float | None = None
        self._told_unreachable = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # events -----------------------------------------------------------------------

    def file_failed(self, file_id: int, name: str, reason: str) -> None:
        """A file became ERROR: the first of an episode at once, the rest digested."""
        if not self._wanted("error"):
            return
        with self._lock:
            if self._episode_since is not None:
                self._pending.append((file_id, f"{name}: {reason}"))
                return
            self._episode_since = self._now()
        self._enqueue(
            "error",
            "A file failed",
            f"File {file_id} ({name}) is in ERROR: {reason}\n"
            "What to do: read the reason, fix the cause, then retry it from the "
            "dashboard (Failed files) or with POST /api/files/retry.",
        )

    def event(self, event: str, title: str, body: str) -> None:
        """Any other event (library_check, sync_stalled, disk_low, recovered)."""
        if self._wanted(event):
            self._enqueue(event, title, body)

    def sync_seen(self, syncing: list[tuple[int, str]], reachable: bool) -> None:
        """One Syncthing poll: batches still SYNCING, and whether Syncthing answered.

        Hand-over times are this process's own (first poll that saw the batch
        SYNCING): a restart starts the clock again, which errs on the quiet side.
        """
        limit = self._settings().sync_stalled_hours * 3600
        now = self._now()
        with self._lock:
            current = {bid for bid, _ in syncing}
            for gone in set(self._syncing_since) - current:
                del self._syncing_since[gone]
                self._told_batches.discard(gone)
            late = []
            for bid, name in syncing:
                since = self._syncing_since.setdefault(bid, now)
                if now - since >= limit and bid not in self._told_batches:
                    self._told_batches.add(bid)
                    late.append(name)
            if reachable:
                self._unreachable_since, self._told_unreachable = None, False
            elif self._unreachable_since is None:
                self._unreachable_since = now
            unreachable = (
                self._unreachable_since is not None
                and now - self._unreachable_since >= limit
                and not self._told_unreachable
            )
            self._told_unreachable = self._told_unreachable or unreachable
        hours = self._settings().sync_stalled_hours
        if late:
            self.event(
                "sync_stalled",
                f"{len(late)} batches not synced for {hours:g} hours",
                f"Syncthing has not delivered {', '.join(late)} {hours:g} hours after "
                "the hand-over.\nWhat to do: check that the receiving devices are "
                "online and connected (Sync on the dashboard, the Syncthing GUI).",
            )
        if unreachable:
            self.event(
                "sync_stalled",
                f"Syncthing unreachable for {hours:g} hours",
                f"Syncthing has not answered for {hours:g} hours.\nWhat to do: check "
                "that it runs and that syncthing.url and its API key are right.",
            )

    def tick(self) -> None:
        """Send the error digest when due; an episode ends after a quiet period."""
        digest = self._settings().digest_minutes * 60
        with self._lock:
            since = self._episode_since
            if since is None or self._now() - since < digest:
                return
            pending, self._pending = self._pending, []
            self._episode_since = self._now() if pending else None
        if pending:
            lines = "\n".join(
                f"- file {fid} {what}" for fid, what in pending[:DIGEST_FILES]
            )
            more = len(pending) - DIGEST_FILES
            tail = f"\n... and {more} more" if more > 0 else ""
            self._enqueue(
                "error",
                f"{len(pending)} more files failed",
                f"{len(pending)} files went to ERROR since the last message:\n"
                f"{lines}{tail}\nWhat to do: see Failed files on the dashboard.",
            )

    def test(self) -> list[Outcome]:
        """A test message to every URL, now (the caller runs it on a thread)."""
        message = Message(
            "test",
            "Media Pipeline test message",
            "Notifications reach you. Nothing needs doing.",
        )
        outcomes = self._deliver(message.title, self._with_link(message.body))
        self._remember(message, outcomes)
        return outcomes

    def history(self) -> list[dict[str, Any]]:
        """The last 100 messages, newest first."""
        with self._lock:
            return list(reversed(self._history))

    # the delivery thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._queue.get(timeout=1.0)
            except queue.Empty:
                message = None
            try:
                if message is not None:
                    self._send(message)
                self.tick()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad message
                logger.bind(event="notify", status="failed").opt(exception=True).error(
                    "notification thread: unexpected failure"
                )

    def _send(self, message: Message) -> None:
        """Deliver with back-off; the URLs that failed are retried, the rest not."""
        body = self._with_link(message.body)
        outcomes = self._deliver(message.title, body)
        for attempt in range(self._retries):
            if all(o.delivered for o in outcomes) or self._stop.is_set():
                break
            for o in outcomes:
                if not o.delivered:
                    logger.bind(event="notify", status="retry").warning(
                        "notification to {} failed ({}); retry {} of {}",
                        o.target,
                        o.error,
                        attempt + 1,
                        self._retries,
                    )
            self._stop.wait(self._backoff * 2**attempt)
            outcomes = self._deliver(message.title, body)
        self._remember(message, outcomes)

    # helpers ----------------------------------------------------------------------

    def _wanted(self, event: str) -> bool:
        s = self._settings()
        return bool(s.urls) and event in s.events

    def _enqueue(self, event: str, title: str, body: str) -> None:
        self._queue.put(Message(event, title, body))

    def _with_link(self, body: str) -> str:
        url = self._public_url()
        return f"{body}\nDashboard: {url}" if url else body

    def _remember(self, message: Message, outcomes: list[Outcome]) -> None:
        failed = [f"{o.target}: {o.error}" for o in outcomes if not o.delivered]
        delivered = bool(outcomes) and not failed
        if failed:
            logger.bind(event="notify", status="failed").error(
                "notification {!r} not delivered: {}", message.title, "; ".join(failed)
            )
        entry = {
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "event": message.event,
            "title": message.title,
            "delivered": delivered,
            "error": "; ".join(failed) or None,
        }
        with self._lock:
            self._history.append(entry)
