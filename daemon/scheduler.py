"""Periodic work on APScheduler 3.x: batching, Syncthing polling, sorting, cleanup.

The jobs follow the live settings: `reconcile()` (called at start and after every
config change) adds, reschedules or removes them, and each tick checks its switch
again when it runs, so a change applies at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger

from pipeline import batch, cleanup, retry, sort, sync, verify
from pipeline.context import Context
from pipeline.jobs import Jobs
from pipeline.models import Batch
from pipeline.states import BatchStatus
from pipeline.store import db_conn
from pipeline.syncthing import SyncthingError

SORT_INTERVAL = 10.0
VERIFY_CHECK_INTERVAL = (
    3600.0  # how often the library.verify_interval_days clock is read
)


class Scheduler:
    """Owns the background scheduler and the jobs the settings switch on."""

    def __init__(self, ctx: Context, jobs: Jobs):
        self.ctx = ctx
        self.jobs = jobs
        self.syncthing_state = "unknown"
        self._intervals: dict[str, float] = {}
        self._lock = threading.Lock()
        self._scheduler = BackgroundScheduler(
            timezone="UTC",
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": 30,
            },
        )

    def start(self) -> None:
        self.reconcile()
        self._scheduler.start()

    def reconcile(self) -> list[str]:
        """Make the periodic jobs match the settings now; returns what changed.

        A job switched on (sort.auto, batch.auto_create) runs at once; one switched
        off is removed (a run already under way finishes); a changed interval
        (batch.max_age_seconds, cleanup.interval_seconds) applies from now.
        """
        wanted = {name: (fn, seconds) for name, fn, seconds in self.periodic()}
        changes = []
        with self._lock:
            for name in list(self._intervals):
                if name not in wanted:
                    self._remove(name)
                    changes.append(f"-{name}")
            for name, (fn, seconds) in wanted.items():
                if name not in self._intervals:
                    self.add(name, fn, seconds)
                    changes.append(f"+{name}")
                elif self._intervals[name] != seconds:
                    self._scheduler.reschedule_job(
                        name, trigger="interval", seconds=seconds
                    )
                    self._intervals[name] = seconds
                    changes.append(f"~{name}")
        if changes:
            logger.bind(event="scheduler").info("periodic jobs: {}", " ".join(changes))
        return changes

    def _remove(self, name: str) -> None:
        self._intervals.pop(name, None)
        if self._scheduler.get_job(name) is not None:
            self._scheduler.remove_job(name)

    def interval(self, name: str) -> float | None:
        """Seconds between runs of a periodic job, None when it is switched off."""
        return self._intervals.get(name)

    def periodic(self) -> list[tuple[str, Callable[[], Any], float]]:
        """(name, function, interval seconds) of every periodic job, in one place."""
        s = self.ctx.settings
        jobs: list[tuple[str, Callable[[], Any], float]] = []
        if s.batch.auto_create:
            jobs.append(
                (
                    "batch",
                    self.batch_tick,
                    batch.timer_interval(s.batch.max_age_seconds),
                )
            )
        if s.syncthing.enabled:
            jobs.append(("sync", self.sync_tick, s.syncthing.poll_interval_seconds))
        if s.sort.auto:
            jobs.append(("sort", self.sort_tick, SORT_INTERVAL))
        jobs.append(("cleanup", self.cleanup_tick, s.cleanup.interval_seconds))
        jobs.append(("verify", self.verify_tick, VERIFY_CHECK_INTERVAL))
        # Always on: retry.* is read when a failure is recorded, so it is live.
        jobs.append(("retry", self.retry_tick, retry.TICK_SECONDS))
        return jobs

    def batch_tick(self) -> None:
        s = self.ctx.settings
        if not s.batch.auto_create:
            return  # switched off since this run was planned
        made = batch.auto_create(self.ctx)
        self._wake_batch_when_due()
        if not made:
            return
        if s.syncthing.enabled:
            if s.syncthing.auto_start:
                self.now("sync")
        elif s.sort.auto:
            # Without Syncthing a new batch is sortable at once: no reason to leave
            # it for the next sort tick.
            self.now("sort")

    def sync_tick(self) -> None:
        # The poll first: it never waits on a scan or on a hand-over in progress.
        state = sync.poll(self.ctx)
        move = False
        if self.ctx.settings.syncthing.auto_start:
            try:
                move = bool(sync.prepare_start(self.ctx))
            except (sync.NotReady, SyncthingError) as exc:
                # Recorded on the batches (or seen by the poll): keep following
                # the batches already handed over.
                logger.bind(event="sync").warning("batches not handed over: {}", exc)
        # Published once the batches carry the reason, so /health never runs ahead
        # of their last_error.
        self.syncthing_state = state
        self._tell_sync(state)
        if move or sync.rescans_due(self.ctx):
            # Moves and scans (minutes, or a hang) run on the job's own thread; a
            # sync job already running is left to finish, never doubled.
            self.jobs.start(
                "sync",
                lambda h: sync.sync_job(self.ctx, h, move=move),
                {"auto": True, "move": move},
            )
        if self.ctx.settings.sort.auto:
            self.now("sort")

    def _tell_sync(self, state: str) -> None:
        """Feed the poll to the owner's notifications (a stalled batch, no answer)."""
        if self.ctx.alerts is None:
            return
        rows = Batch.select(Batch.id, Batch.name).where(
            Batch.status == BatchStatus.SYNCING
        )
        self.ctx.alerts.sync_seen([(b.id, b.name) for b in rows], state == "ok")

    def sort_tick(self) -> None:
        # A batch that became sortable while a sort ran would otherwise wait for the
        # next tick: the scheduler drops a "now" while the job is still running. Only
        # new batches earn another round, so one that keeps failing waits its tick.
        # sort.auto is read each round: switched off, the next round does not start.
        tried: set[int] = set()
        while self.ctx.settings.sort.auto:
            ready = {b.id for b in sort.sortable_batches(self.ctx)}
            if not ready - tried:
                return
            tried |= ready
            self.jobs.run_inline("sort", lambda h: sort.sort_job(self.ctx, h))

    def retry_tick(self) -> None:
        """Retry the failed files that are due (a job only when there are some)."""
        if retry.due_count(db_conn(), self.ctx.clock()):
            self.jobs.run_inline("retry", lambda h: retry.retry_job(self.ctx, h))

    def cleanup_tick(self) -> None:
        cleanup.run_cleanup(self.ctx)

    def verify_tick(self) -> None:
        """Start `verify --hash` at the bounded rate when library.verify_interval_days is due."""
        lib = self.ctx.settings.library
        if verify.due(self.ctx.clock(), lib.verify_interval_days):
            self.jobs.start(
                "verify",
                lambda h: verify.verify_job(
                    self.ctx,
                    h,
                    hash_all=True,
                    scheduled=True,
                    rate_mb_per_s=lib.verify_rate_mb_per_s,
                ),
                {
                    "hash": True,
                    "scheduled": True,
                    "rate_mb_per_s": lib.verify_rate_mb_per_s,
                },
            )

    def _wake_batch_when_due(self) -> None:
        """Run the batch timer again when the next batch is due, if before its round.

        The timer looks every max_age/10 seconds (at least 1 s): without this a
        batch would come up to that much later than batch.max_age_seconds says.
        """
        due = batch.due_in(self.ctx)
        interval = self._intervals.get("batch")
        # Not when due now: a batch that could not be made now waits for the round.
        if due is None or interval is None or not 0 < due < interval:
            return
        # A few ms late rather than early: early, the oldest file is not yet old.
        self._run_at("batch", datetime.now(UTC) + timedelta(seconds=due + 0.01))

    def now(self, name: str) -> None:
        """Run a periodic job as soon as possible (it never runs twice at once)."""
        self._run_at(name, datetime.now(UTC))

    def _run_at(self, name: str, when: datetime) -> None:
        """Move a job's next run to `when`; nothing when there is no such job.

        One call under the scheduler's lock: a job looked up first could be removed
        by a shutdown before it is changed (JobLookupError, logged as a failed tick).
        """
        with contextlib.suppress(JobLookupError):
            self._scheduler.modify_job(name, next_run_time=when)

    def add(self, name: str, fn: Callable[[], Any], seconds: float) -> None:
        """Add a periodic job; once the scheduler runs, its first run is now."""
        first = {"next_run_time": datetime.now(UTC)} if self.is_alive() else {}
        self._scheduler.add_job(
            self._guard(name, fn),
            "interval",
            seconds=seconds,
            id=name,
            name=name,
            **first,
        )
        self._intervals[name] = seconds

    def _guard(self, name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                logger.bind(event=name, status="failed").exception(
                    "scheduled {} failed", name
                )

        return run

    def is_alive(self) -> bool:
        return bool(self._scheduler.running)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
