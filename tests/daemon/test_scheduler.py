"""The scheduler's ticks: what each one starts, without waiting for the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline import sort
from pipeline.batch import create_batch
from pipeline.models import (
    Batch,
    BatchStatus,
    File,
    FileStatus,
    Job,
    JobStatus,
    utcnow,
)
from tests.conftest import add_file, wait_until


def sorting_by_hand(service: Any) -> Any:
    """A service with sort.auto on whose own sort timer is an hour out: ticks by hand."""
    svc = service(sort={"auto": True})
    later = datetime.now(UTC) + timedelta(hours=1)
    svc.scheduler._scheduler.get_job("sort").modify(next_run_time=later)
    return svc


def accepted(svc: Any, name: str) -> int:
    path = svc.ctx.roots.inbox / name
    path.write_bytes(name.encode())
    return add_file(svc, name, FileStatus.UNIQUE, size=len(name), sha256=name * 8)


def test_a_new_batch_without_syncthing_is_sorted_now_not_at_the_next_tick(
    service: Any,
) -> None:
    svc = service(
        batch={"auto_create": True, "max_age_seconds": 0}, sort={"auto": True}
    )
    job = svc.scheduler._scheduler.get_job("sort")
    job.modify(next_run_time=datetime.now(UTC) + timedelta(hours=1))
    accepted(svc, "a.jpg")

    svc.scheduler.batch_tick()

    # The sort tick was pushed an hour out: only the new batch can have started it.
    wait_until(
        lambda: Batch.get_or_none(Batch.status == BatchStatus.SORTED), timeout=30
    )


def test_without_new_batches_the_sort_keeps_its_schedule(service: Any) -> None:
    svc = service(
        batch={"auto_create": True, "max_age_seconds": 3600}, sort={"auto": True}
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    svc.scheduler._scheduler.get_job("sort").modify(next_run_time=later)
    accepted(svc, "a.jpg")  # too young for a batch

    svc.scheduler.batch_tick()

    assert Batch.select().count() == 0
    assert svc.scheduler._scheduler.get_job("sort").next_run_time == later


def test_a_batch_made_during_a_sort_is_sorted_in_the_same_tick(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = sorting_by_hand(service)
    accepted(svc, "first.jpg")
    create_batch(svc.ctx)
    real_sort_job = sort.sort_job
    rounds: list[int] = []

    def sort_job_while_a_batch_arrives(ctx: Any, handle: Any) -> Any:
        rounds.append(1)
        result = real_sort_job(ctx, handle)
        if len(rounds) == 1:
            accepted(svc, "second.jpg")
            create_batch(ctx)
        return result

    monkeypatch.setattr(sort, "sort_job", sort_job_while_a_batch_arrives)
    svc.scheduler.sort_tick()

    assert len(rounds) == 2
    assert {b.status for b in Batch.select()} == {BatchStatus.SORTED}
    assert File.select().where(File.status == FileStatus.SORTED).count() == 2


def test_a_batch_that_stays_sortable_gets_one_round_per_tick(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = sorting_by_hand(service)
    accepted(svc, "a.jpg")
    create_batch(svc.ctx)
    rounds: list[int] = []
    monkeypatch.setattr(sort, "sort_job", lambda ctx, handle: rounds.append(1))

    svc.scheduler.sort_tick()

    assert rounds == [1]


def test_the_retry_tick_runs_due_retries_and_nothing_else(service: Any) -> None:
    svc = service(intake={"media_only": False}, retry={"backoff_seconds": 30})
    assert svc.scheduler.interval("retry") is not None  # always on
    path = svc.ctx.roots.inbox / "a.bin"
    path.write_bytes(b"a" * 100)
    svc.submit(path)
    wait_until(lambda: File.get_or_none(File.status == FileStatus.UNIQUE))
    made = create_batch(svc.ctx)
    assert made is not None
    svc.ctx.roots.sorted_dir.rmdir()  # the library disk is away
    sort.sort_batch(svc.ctx, made)
    row = File.get()
    assert row.status == FileStatus.ERROR and row.next_retry_at is not None
    svc.ctx.roots.sorted_dir.mkdir()

    svc.scheduler.retry_tick()  # not yet due: no job at all
    assert not Job.select().where(Job.kind == "retry").exists()
    due = row.next_retry_at + timedelta(seconds=1)
    svc.ctx.clock = lambda: due
    svc.scheduler.retry_tick()
    # (The scheduler's own tick may have got there first: one job either way.)
    job = wait_until(
        lambda: Job.get_or_none(Job.kind == "retry", Job.status == JobStatus.DONE)
    )
    assert job.done == 1 and Job.select().where(Job.kind == "retry").count() == 1
    assert File.get_by_id(row.id).status == FileStatus.SORTED
    assert Batch.get_by_id(made.id).status == BatchStatus.SORTED


def test_the_batch_timer_wakes_when_the_oldest_file_is_due_not_at_its_round(
    service: Any,
) -> None:
    # max_age 30 s: the timer's round is 3 s; the file is due in 1.5 s.
    svc = service(batch={"auto_create": True, "max_age_seconds": 30})
    job = svc.scheduler._scheduler.get_job("batch")
    later = datetime.now(UTC) + timedelta(hours=1)
    job.modify(next_run_time=later)
    accepted(svc, "young.jpg")  # due in 30 s: the round comes first, nothing changes
    svc.scheduler.batch_tick()
    assert job.next_run_time == later
    svc.ctx.writer.call(
        lambda: File.update(updated_at=utcnow() - timedelta(seconds=28.5)).execute()
    )

    before = datetime.now(UTC)
    svc.scheduler.batch_tick()

    assert Batch.select().count() == 0  # not old enough yet
    wake = svc.scheduler._scheduler.get_job("batch").next_run_time
    assert before + timedelta(seconds=1) < wake < before + timedelta(seconds=2)
    wait_until(lambda: Batch.select().count() == 1, timeout=30)


def test_a_job_removed_while_it_is_brought_forward_is_no_error(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(batch={"auto_create": True, "max_age_seconds": 30})
    scheduler = svc.scheduler._scheduler
    stale = scheduler.get_job("batch")
    scheduler.remove_job("batch")  # a shutdown, between a lookup and the change
    monkeypatch.setattr(scheduler, "get_job", lambda *args, **kwargs: stale)
    accepted(svc, "old.jpg")
    svc.ctx.writer.call(
        lambda: File.update(updated_at=utcnow() - timedelta(seconds=28.5)).execute()
    )

    svc.scheduler.now("batch")
    svc.scheduler.batch_tick()  # brings the timer forward: due in 1.5 s

    assert "batch" not in [job.id for job in scheduler.get_jobs()]  # not re-added
