"""Service wiring: health of the parts, a hung stage, restart resumption."""

from __future__ import annotations

from typing import Any

from pipeline.models import File, FileStatus
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import make_jpeg


def test_a_stage_stuck_on_one_item_makes_the_service_unhealthy(service: Any) -> None:
    svc = service(system={"max_parallel_fs_ops": 1, "stall_timeout_seconds": 0.2})
    assert svc.healthy()
    svc.ctx.fs_slots.acquire()  # every file-I/O slot taken: the hash stage cannot go on
    try:
        path = make_jpeg(svc.ctx.roots.inbox / "a.jpg", seed=1)
        svc.submit(path)
        wait_until(lambda: not svc.healthy(), timeout=5)
    finally:
        svc.ctx.fs_slots.release()
    wait_until(svc.healthy, timeout=5)
    wait_until(lambda: File.get_or_none(File.status == FileStatus.UNIQUE), timeout=5)


def test_components_and_status_line(service: Any) -> None:
    svc = service(watcher={"enabled": True, "settle_seconds": 0.1})
    parts = svc.components()
    assert parts["watcher"] in ("inotify", "polling")
    assert parts["scheduler"] == "ok" and parts["syncthing"] == "disabled"
    assert svc.status_line() == "no files yet"
    make_jpeg(svc.ctx.roots.inbox / "a.jpg", seed=2)
    wait_until(lambda: "unique 1" in svc.status_line(), timeout=10)
    svc.stop()
    svc.stop()  # idempotent
    assert svc.components()["watcher"] == "stopped"


def test_rows_left_new_or_hashed_are_resumed_at_start(service: Any) -> None:
    first = service()
    inbox = first.ctx.roots.inbox
    path = make_jpeg(inbox / "b.jpg", seed=3)
    st = path.stat()
    first.ctx.writer.call(
        lambda: File.create(
            original_path=str(path),
            rel_path="b.jpg",
            current_path=str(path),
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
        )
    )
    first.stop()
    service()
    wait_until(lambda: File.get_or_none(File.status == FileStatus.UNIQUE), timeout=10)
    assert File.select().count() == 1


def test_start_up_objects_are_frozen_until_stop(service: Any) -> None:
    import gc

    svc = service()
    assert gc.get_freeze_count() > 0  # full collections skip the start-up objects
    svc.stop()
    assert gc.get_freeze_count() == 0
