"""Jobs without the daemon: one running job per kind, claimed on the writer."""

from __future__ import annotations

import threading
from typing import Any

from pipeline.context import Context
from pipeline.jobs import JobHandle, Jobs, fail_interrupted, job_dict
from pipeline.models import Job, JobStatus

WAIT = 10.0  # seconds: a deadline, not a pause


def held_job(calls: list[int]) -> tuple[threading.Event, Any]:
    """A job function that runs until the returned event is set."""
    release = threading.Event()

    def fn(handle: JobHandle) -> dict[str, Any]:
        calls.append(handle.job_id)
        assert release.wait(WAIT), "the test never released the job"
        return {"message": "released"}

    return release, fn


def test_second_start_of_a_running_kind_returns_the_running_job(ctx: Context) -> None:
    jobs, calls = Jobs(ctx.writer), []
    release, fn = held_job(calls)
    first, created = jobs.start("scan", fn)
    assert created and first.status == JobStatus.RUNNING
    again, created_again = jobs.start("scan", fn)
    assert not created_again and again.id == first.id
    release.set()
    jobs.wait(first.id, WAIT)
    assert calls == [first.id]  # the function ran once
    done = Job.get_by_id(first.id)
    assert done.status == JobStatus.DONE and done.message == "released"
    assert Job.select().where(Job.kind == "scan").count() == 1


def test_a_kind_that_finished_starts_afresh(ctx: Context) -> None:
    jobs = Jobs(ctx.writer)
    first, _ = jobs.start("batch", lambda handle: {"made": 1})
    jobs.wait(first.id, WAIT)
    second, created = jobs.start("batch", lambda handle: None)
    jobs.wait(second.id, WAIT)
    assert created and second.id != first.id
    assert job_dict(Job.get_by_id(first.id))["result"] == {"made": 1}


def test_other_kinds_run_alongside(ctx: Context) -> None:
    jobs, calls = Jobs(ctx.writer), []
    release, fn = held_job(calls)
    sorting, _ = jobs.start("sort", fn)
    cleaning, created = jobs.start("cleanup", lambda handle: None)
    jobs.wait(cleaning.id, WAIT)
    assert created and cleaning.id != sorting.id
    assert Job.get_by_id(cleaning.id).status == JobStatus.DONE
    assert Job.get_by_id(sorting.id).status == JobStatus.RUNNING
    release.set()
    jobs.wait(sorting.id, WAIT)


def test_concurrent_starts_claim_one_job(ctx: Context) -> None:
    jobs, calls = Jobs(ctx.writer), []
    release, fn = held_job(calls)
    answers: list[tuple[int, bool]] = []
    gate = threading.Barrier(8)

    def start() -> None:
        gate.wait(WAIT)
        job, created = jobs.start("dedup", fn)
        answers.append((job.id, created))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    release.set()
    jobs.wait_all(WAIT)
    assert len(answers) == 8
    assert len({job_id for job_id, _ in answers}) == 1
    assert sum(created for _, created in answers) == 1
    assert len(calls) == 1


def test_run_inline_while_one_runs_returns_it_without_running(ctx: Context) -> None:
    jobs, calls = Jobs(ctx.writer), []
    release, fn = held_job(calls)
    running, _ = jobs.start("verify", fn)
    inline = jobs.run_inline("verify", lambda handle: calls.append(-1) or None)
    assert inline.id == running.id and inline.status == JobStatus.RUNNING
    release.set()
    jobs.wait(running.id, WAIT)
    assert calls == [running.id]


def test_failing_job_is_failed_with_its_progress(ctx: Context) -> None:
    jobs = Jobs(ctx.writer)

    def fn(handle: JobHandle) -> dict[str, Any]:
        handle.set_total(4)
        handle.advance(2, 1)
        raise ValueError("disk went away")

    job = jobs.run_inline("sort", fn)
    assert job.status == JobStatus.FAILED
    assert job.message == "ValueError: disk went away"
    assert (job.total, job.done, job.errors) == (4, 2, 1)
    shown = job_dict(job)
    assert shown["progress"] == 50.0 and shown["result"] is None
    again, created = jobs.start("sort", lambda handle: None)  # FAILED is not running
    jobs.wait(again.id, WAIT)
    assert created


def test_jobs_left_running_by_a_crash_fail_at_start(ctx: Context) -> None:
    jobs, calls = Jobs(ctx.writer), []
    release, fn = held_job(calls)
    job, _ = jobs.start("adopt", fn)
    assert fail_interrupted(ctx.writer) == 1
    left = Job.get_by_id(job.id)
    assert left.status == JobStatus.FAILED
    assert left.message == "interrupted by a restart"
    # The kind is free again: a new start is a new job.
    fresh, created = jobs.start("adopt", lambda handle: None)
    assert created and fresh.id != job.id
    release.set()
    jobs.wait_all(WAIT)
