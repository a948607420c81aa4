"""Jobs: rows in `jobs` with progress, run on their own thread, one per kind at a time."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from loguru import logger

from pipeline.db import Writer
from pipeline.models import Job, JobStatus, iso, utcnow


class JobHandle:
    """What a running job's function uses to report progress."""

    def __init__(self, writer: Writer, job_id: int, params: dict[str, Any]):
        self.writer = writer
        self.job_id = job_id
        self.params = params
        self.done = 0
        self.errors = 0

    def set_total(self, total: int) -> None:
        self.writer.call(
            lambda: Job.update(total=total).where(Job.id == self.job_id).execute()
        )

    def advance(self, done: int = 1, errors: int = 0) -> None:
        """Add to the done/error counters (queued, not waited for)."""
        self.done += done
        self.errors += errors
        d, e = self.done, self.errors
        self.writer.submit(
            lambda: Job.update(done=d, errors=e).where(Job.id == self.job_id).execute()
        )


JobFn = Callable[[JobHandle], dict[str, Any] | None]


def job_dict(job: Job) -> dict[str, Any]:
    """A job as the API shows it (SPEC §6)."""
    progress = 100.0 if job.status == JobStatus.DONE else 0.0
    if job.total and job.status != JobStatus.DONE:
        progress = round(min(100.0, 100.0 * job.done / job.total), 1)
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "total": job.total,
        "done": job.done,
        "progress": progress,
        "errors": job.errors,
        "message": job.message,
        "result": json.loads(job.result) if job.result else None,
    }


def latest(kind: str) -> Job | None:
    return Job.select().where(Job.kind == kind).order_by(Job.id.desc()).first()


def fail_interrupted(writer: Writer) -> int:
    """Mark jobs a crash left QUEUED/RUNNING as FAILED; returns how many."""
    return writer.call(
        lambda: Job.update(
            status=JobStatus.FAILED,
            finished_at=utcnow(),
            message="interrupted by a restart",
        )
        .where(Job.status.in_(JobStatus.ACTIVE))
        .execute()
    )


class Jobs:
    """Starts jobs; while one of a kind runs, starting that kind returns the running one."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self._threads: dict[int, threading.Thread] = {}

    def start(
        self, kind: str, fn: JobFn, params: dict[str, Any] | None = None
    ) -> tuple[Job, bool]:
        """(job, created): the running job of `kind`, or a new one started on a thread."""
        params = params or {}
        job, created = self.writer.call(lambda: self._claim(kind, params))
        if created:
            thread = threading.Thread(
                target=self._run,
                args=(job.id, fn, params),
                name=f"job-{kind}",
                daemon=True,
            )
            self._threads[job.id] = thread
            thread.start()
        return job, created

    def run_inline(
        self, kind: str, fn: JobFn, params: dict[str, Any] | None = None
    ) -> Job:
        """Run a job on the calling thread (scheduler jobs); same bookkeeping."""
        params = params or {}
        job, created = self.writer.call(lambda: self._claim(kind, params))
        if created:
            self._run(job.id, fn, params)
        return Job.get_by_id(job.id)

    def wait(self, job_id: int, timeout: float | None = None) -> None:
        thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)

    def wait_all(self, timeout: float = 10) -> None:
        for thread in list(self._threads.values()):
            thread.join(timeout)

    @staticmethod
    def _claim(kind: str, params: dict[str, Any]) -> tuple[Job, bool]:
        active = (
            Job.select()
            .where(Job.kind == kind, Job.status.in_(JobStatus.ACTIVE))
            .first()
        )
        if active is not None:
            return active, False
        job = Job.create(
            kind=kind,
            status=JobStatus.RUNNING,
            started_at=utcnow(),
            params=json.dumps(params),
        )
        return job, True

    def _run(self, job_id: int, fn: JobFn, params: dict[str, Any]) -> None:
        handle = JobHandle(self.writer, job_id, params)
        log = logger.bind(event="job", status="running")
        try:
            result = fn(handle) or {}
            status, message = JobStatus.DONE, result.pop("message", None)
        except Exception as exc:
            log.exception("job {} failed", job_id)
            status, message, result = (
                JobStatus.FAILED,
                f"{type(exc).__name__}: {exc}",
                {},
            )
        self.writer.call(lambda: self._finish(job_id, handle, status, message, result))
        self._threads.pop(job_id, None)

    @staticmethod
    def _finish(
        job_id: int, handle: JobHandle, status: str, message: Any, result: dict
    ) -> None:
        Job.update(
            status=status,
            finished_at=utcnow(),
            done=handle.done,
            errors=handle.errors,
            message=message,
            result=json.dumps(result, default=str) if result else None,
        ).where(Job.id == job_id).execute()
