"""Wiring: config → database → recovery → runner → watcher → scheduler → web server.

`Service.start()` brings everything up (and can be used without the HTTP server, as
tests do); `Service.run()` also serves HTTP in the foreground until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from loguru import logger

from daemon import logs
from daemon.alerting import apprise_delivery
from daemon.config import LoadedConfig, ensure_folders
from daemon.configport import FileConfigPort
from daemon.httpserver import HttpServer, server_config
from daemon.notify import Notifier, WatchdogThread
from daemon.scheduler import Scheduler
from daemon.watcher import InboxWatcher
from pipeline import __version__, adopt, fsops, stats, status
from pipeline.alerts import Alerts
from pipeline.batch import resume_building
from pipeline.context import Context, Roots
from pipeline.db import Writer, open_database
from pipeline.jobs import Jobs, fail_interrupted
from pipeline.models import File, FileStatus
from pipeline.nearindex import NearIndex, accepted_hashes
from pipeline.runner import Runner
from pipeline.scan import scan_inbox, settled_paths
from pipeline.stages import intake_stages, record_error
from pipeline.syncthing import SyncthingClient
from web.app import create_app
from web.state import AppState

STOP_TIMEOUT = 8.0


class _Steps:
    """Milliseconds spent in each start-up step, for the READY log line."""

    def __init__(self) -> None:
        self.started = self.last = time.monotonic()
        self.ms: dict[str, int] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.ms[name] = round((now - self.last) * 1000)
        self.last = now

    def total(self) -> int:
        return round((time.monotonic() - self.started) * 1000)


class Service:
    """The daemon's parts, started and stopped in order."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        syncthing_transport: httpx.BaseTransport | None = None,
        force_copy: bool = False,
    ):
        self.loaded = loaded
        self.settings = loaded.settings
        self.syncthing_transport = syncthing_transport
        self.force_copy = force_copy
        # Retry policy of undelivered notifications (tests shorten the back-off).
        self.notify_retries = 4
        self.notify_backoff_seconds = 5.0
        self.notifier = Notifier.from_env()
        self.ctx: Context | None = None
        self.runner: Runner[Context] | None = None
        self.watcher: InboxWatcher | None = None
        self.scheduler: Scheduler | None = None
        self.jobs: Jobs | None = None
        self.server: HttpServer | None = None
        self._watchdog: WatchdogThread | None = None
        self._stopped = threading.Event()
        self._counter_check: threading.Thread | None = None

    # start-up ---------------------------------------------------------------------

    def start(self) -> Context:
        s = self.settings
        steps = _Steps()  # where start-up's seconds go, logged with READY
        ensure_folders(s)
        logs.setup(s.paths.log_dir, s.logging.level, s.logging.rotation_mb)
        for secret in (s.syncthing.api_key, s.auth.api_key, s.dbui.password):
            logs.add_secret(secret)
        for url in s.notify.urls:
            logs.add_secret(url)
        alerts = self._alerts()
        steps.mark("logs")
        db = open_database(s.database.path, s.database.busy_timeout_ms)
        steps.mark("database")
        writer = Writer(db)
        slots = threading.BoundedSemaphore(s.system.max_parallel_fs_ops)
        mover = fsops.Mover(writer, fs_slots=slots, force_copy=self.force_copy)
        recovered = fsops.recover(writer)
        interrupted = fail_interrupted(writer)
        steps.mark("recovery")
        logger.bind(event="start").info(
            "recovered moves {}; interrupted jobs marked failed: {}",
            recovered,
            interrupted,
        )
        ctx = Context(
            settings=s,
            roots=Roots.from_settings(s.paths),
            writer=writer,
            mover=mover,
            fs_slots=slots,
            near_index=self._near_index(),
            syncthing=self._syncthing_client(),
            alerts=alerts,
        )
        self.ctx = ctx
        moves = sum(recovered.values())
        if moves:
            alerts.event(
                "recovered",
                "Recovered after an unclean stop",
                f"The daemon stopped uncleanly and recovered {moves} moves on "
                "start. Nothing was lost; nothing needs doing unless it recurs "
                "(then look at the journal for the cause of the stops).",
            )
        steps.mark("near_index_started")
        self.jobs = Jobs(writer)
        self.runner = Runner(ctx, intake_stages(ctx), record_error, s.system.queue_size)
        self.runner.start()
        self._resume_inbox_rows()
        steps.mark("inbox_rows")
        resume_building(ctx)  # batches a crash left half-built are finished first
        self._resume_adoption(ctx)
        steps.mark("batches")
        if s.watcher.enabled:
            self.watcher = self._make_watcher()
            self.watcher.start()
        steps.mark("watcher")
        self.scheduler = Scheduler(ctx, self.jobs)
        self.scheduler.start()
        self._check_counters(db, writer)
        steps.mark("scheduler")
        logger.bind(
            event="start", status="ready", duration_ms=steps.total(), steps=steps.ms
        ).info("media-pipeline {} started (inbox {})", __version__, s.paths.inbox)
        # What start-up made lives as long as the daemon. Frozen, it is left out of
        # the collector's full passes, which otherwise walk all of it (40 ms measured,
        # in the middle of a sort) whenever enough new objects have survived.
        gc.freeze()
        return ctx

    def _alerts(self) -> Alerts:
        """Owner notifications, delivered by Apprise on their own thread."""
        s = self.settings
        alerts = Alerts(
            apprise_delivery(lambda: list(s.notify.urls)),
            lambda: s.notify,
            lambda: s.server.public_url,
            retries=self.notify_retries,
            backoff_seconds=self.notify_backoff_seconds,
        )
        alerts.start()
        return alerts

    def _resume_adoption(self, ctx: Context) -> None:
        """An adoption a stop or crash interrupted goes on (recorded files are kept)."""
        assert self.jobs is not None
        paths = adopt.interrupted()
        if paths:
            logger.bind(event="adopt").info("resuming the adoption of {}", paths)
            self.jobs.start(
                "adopt",
                lambda h: adopt.adopt_job(ctx, h, paths),
                {"paths": paths, "resumed": True},
            )

    def _near_index(self) -> NearIndex:
        # Filled on a thread: a million hashes must not delay READY. Intake waits
        # for it before its first near-duplicate decision.
        index = NearIndex()
        index.load_in_background(accepted_hashes)
        return index

    def _check_counters(self, db: Any, writer: Writer) -> None:
        """Compare the status counters with the tables once, after start (background).

        A full count reads every row: READY does not wait for it, and the counters
        are kept by triggers meanwhile. A mismatch (a database edited without them)
        is rebuilt with a warning.
        """

        def run() -> None:
            # After the near-duplicate index: intake waits for that one, not for this,
            # so the two full reads do not share the cores at the same time.
            if self.ctx is not None and self.ctx.near_index is not None:
                self.ctx.near_index.wait_ready(60)
            started = time.monotonic()
            try:
                diff = stats.check_and_repair(db, writer)
                logger.bind(
                    event="stats",
                    duration_ms=round((time.monotonic() - started) * 1000),
                ).info(
                    "status counters checked: {}",
                    "recounted" if diff else "in step with the tables",
                )
            except Exception:  # noqa: BLE001 - a failed check must not stop the daemon
                logger.bind(event="stats", status="failed").opt(exception=True).warning(
                    "status counter check failed"
                )
            finally:
                db.close()  # this thread's connection

        self._counter_check = threading.Thread(
            target=run, name="stats-check", daemon=True
        )
        self._counter_check.start()

    def _syncthing_client(self) -> SyncthingClient | None:
        st = self.settings.syncthing
        if not st.enabled:
            return None
        return SyncthingClient(
            st.url,
            st.api_key,
            timeout=st.timeout_seconds,
            transport=self.syncthing_transport,
        )

    def _make_watcher(self) -> InboxWatcher:
        w = self.settings.watcher
        return InboxWatcher(
            self.settings.paths.inbox,
            self.submit,
            settle_seconds=w.settle_seconds,
            rescan_interval_seconds=w.rescan_interval_seconds,
            ignore_patterns=w.ignore_patterns,
            # NEW/HASHED rows were resubmitted by _resume_inbox_rows already; only a
            # changed file (which the watcher then tracks itself) needs announcing.
            is_known=lambda path: bool(settled_paths([str(path)], FileStatus.IN_INBOX)),
        )

    def _resume_inbox_rows(self) -> None:
        """Files a stop or crash left NEW or HASHED go through the stages again."""
        rows = File.select(File.current_path).where(
            File.status.in_((FileStatus.NEW, FileStatus.HASHED))
        )
        for row in rows:
            self.submit(Path(row.current_path))

    def submit(self, path: Path) -> None:
        """Hand a settled inbox file to the intake stages."""
        if self.runner is not None:
            self.runner.submit(path)

    def apply_live(self, keys: list[str]) -> None:
        """React to live config changes (already in `self.settings`) at once."""
        if self.scheduler is not None:
            self.scheduler.reconcile()
        if (
            "intake.media_only" in keys
            and not self.settings.intake.media_only
            and self.ctx is not None
            and self.jobs is not None
        ):
            # The files it skipped are wanted now: a scan takes them.
            ctx = self.ctx
            self.jobs.start("dedup", lambda h: scan_inbox(ctx, h))

    # health -----------------------------------------------------------------------

    def components(self) -> dict[str, str]:
        """Component states for /health and the systemd watchdog."""
        watcher = "disabled"
        if self.watcher is not None:
            watcher = self.watcher.mode if self.watcher.is_alive() else "stopped"
        scheduler = "ok" if self.scheduler and self.scheduler.is_alive() else "stopped"
        syncthing = "disabled"
        if self.ctx is not None and self.ctx.syncthing is not None:
            syncthing = self.scheduler.syncthing_state if self.scheduler else "unknown"
        return {"watcher": watcher, "scheduler": scheduler, "syncthing": syncthing}

    def healthy(self) -> bool:
        """True while every pipeline thread is alive and no stage is stuck on one item."""
        parts = [self.runner, self.ctx.writer if self.ctx else None, self.scheduler]
        alive = all(p is not None and p.is_alive() for p in parts)
        alive = alive and (self.watcher is None or self.watcher.is_alive())
        if not alive or self.runner is None:
            return False
        hung = self.runner.stalled(self.settings.system.stall_timeout_seconds)
        if hung:
            logger.bind(event="watchdog", status="stalled").error(
                "stage stuck: {}", hung
            )
        return not hung

    def status_line(self) -> str:
        counts = status.file_counts()
        return (
            ", ".join(f"{k.lower()} {v}" for k, v in counts.items() if v)
            or "no files yet"
        )

    # shutdown ---------------------------------------------------------------------

    def stop(self) -> None:
        """Stop taking work, let in-flight moves finish, close the database. Idempotent."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.notifier.stopping()
        deadline = time.monotonic() + STOP_TIMEOUT
        if self._watchdog is not None:
            self._watchdog.stop()
        if self.watcher is not None:
            self.watcher.stop(timeout=2)
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.runner is not None:
            self.runner.stop(timeout=max(0.5, deadline - time.monotonic() - 2))
        if self.jobs is not None:
            self.jobs.wait_all(timeout=max(0.1, deadline - time.monotonic() - 1))
        if self._counter_check is not None:
            self._counter_check.join(timeout=max(0.1, deadline - time.monotonic() - 1))
        if self.ctx is not None and self.ctx.near_index is not None:
            self.ctx.near_index.join_loader(max(0.1, deadline - time.monotonic() - 1))
        if self.ctx is not None and self.ctx.alerts is not None:
            self.ctx.alerts.stop(timeout=max(0.1, deadline - time.monotonic() - 1))
        if self.ctx is not None:
            if self.ctx.syncthing is not None:
                self.ctx.syncthing.close()
            self.ctx.writer.close(timeout=max(0.5, deadline - time.monotonic()))
        gc.unfreeze()  # collectable again, for a process that goes on (tests)
        logger.bind(event="stop").info("media-pipeline stopped")

    # foreground -------------------------------------------------------------------

    def app_state(self) -> AppState:
        assert self.ctx is not None and self.jobs is not None
        auth = self.settings.auth
        return AppState(
            ctx=self.ctx,
            jobs=self.jobs,
            version=__version__,
            config=FileConfigPort(self.loaded, self.ctx, on_change=self.apply_live),
            components=self.components,
            submit=self.submit,
            api_key=lambda: auth.api_key,
            auth_enabled=lambda: auth.enabled,
        )

    def run(self) -> int:
        """Start, serve HTTP until SIGTERM/SIGINT, stop; returns the exit code."""
        # A watchdog abort (SIGABRT) then prints every thread's stack to the journal.
        faulthandler.enable()
        self.start()
        app = create_app(self.app_state(), dbui=self.settings.dbui)
        self.server = HttpServer(server_config(app, self.settings.server))
        previous = self._install_signals()
        try:
            asyncio.run(self._serve())
        finally:
            self._restore_signals(previous)
            self.stop()
        return 0 if not getattr(self.server, "_failed", False) else 1

    async def _serve(self) -> None:
        assert self.server is not None
        serve = asyncio.create_task(self.server.serve())
        while not self.server.started and not serve.done():
            await asyncio.sleep(0.05)
        if self.server.started:
            self._announce_ready()
        await serve
        if not self.server.started:
            self.server._failed = True  # type: ignore[attr-defined]

    def _announce_ready(self) -> None:
        self.notifier.ready(self.status_line())
        if self.notifier.watchdog_interval():
            self._watchdog = WatchdogThread(
                self.notifier, self.healthy, self.status_line
            )
            self._watchdog.start()
        logger.bind(event="start", status="listening").info(
            "listening on http://{}:{}",
            self.settings.server.host,
            self.settings.server.port,
        )

    def _install_signals(self) -> dict[int, Any]:
        def handler(signum: int, frame: Any) -> None:
            logger.bind(event="stop").info("signal {} received: stopping", signum)
            self.notifier.stopping()
            if self.server is not None:
                self.server.should_exit = True

        return {
            sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)
        }

    @staticmethod
    def _restore_signals(previous: dict[int, Any]) -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)
