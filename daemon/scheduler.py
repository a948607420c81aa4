"""Periodic work on APScheduler 3.x: batching, Syncthing polling, sorting, cleanup."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from loguru import logger

from pipeline.context import Context
from pipeline.jobs import Jobs


class Scheduler:
    """Owns the background scheduler and the jobs the settings switch on."""

    def __init__(self, ctx: Context, jobs: Jobs):
        self.ctx = ctx
        self.jobs = jobs
        self.syncthing_state = "unknown"
        self._scheduler = BackgroundScheduler(
            timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}
        )

    def start(self) -> None:
        for name, fn, seconds in self.periodic():
            self.add(name, fn, seconds)
        self._scheduler.start()

    def periodic(self) -> list[tuple[str, Callable[[], Any], float]]:
        """(name, function, interval seconds) of every periodic job, in one place."""
        return []

    def add(self, name: str, fn: Callable[[], Any], seconds: float) -> None:
        self._scheduler.add_job(self._guard(name, fn), "interval", seconds=seconds, id=name, name=name)

    def _guard(self, name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except Exception:
                logger.bind(event=name, status="failed").exception("scheduled {} failed", name)

        return run

    def is_alive(self) -> bool:
        return bool(self._scheduler.running)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
