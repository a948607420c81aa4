"""The scheduler's ticks: what each one starts, without waiting for the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline import sort
from pipeline.batch import create_batch
from pipeline.models import Batch, BatchStatus, File, FileStatus
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
