"""Every key not in restart_required takes effect at once, through PUT /api/config.

`LIVE_CHECKS` names the test that shows each live key working; a key that becomes live
without one (or a key in the table that is no longer live) fails
`test_every_live_key_has_a_check`.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from daemon import config as cfg
from daemon.scheduler import SORT_INTERVAL
from pipeline import batch as batches
from pipeline import retry, sort
from pipeline.adopt import adopt_job
from pipeline.cleanup import run_cleanup
from pipeline.fsops import TEMP_PREFIX
from pipeline.models import Batch, BatchStatus, File, FileStatus, Job, JobStatus
from pipeline.store import db_conn
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import make_jpeg, make_plain, pattern
from tests.web.live import serve_app
from web.app import create_app

MB = 1024 * 1024
KEY = "live-key-" + "x" * 24

LIVE_CHECKS = {
    "batch.auto_create": "test_batch_auto_create_switches_both_ways",
    "batch.max_age_seconds": "test_batch_max_age_reschedules_the_timer",
    "batch.max_size_gb": "test_batch_max_size_applies_to_the_next_batch",
    "dedup.near_duplicate_distance": "test_near_duplicate_distance_applies_to_the_next_file",
    "sort.auto": "test_sort_auto_toggled_live_both_ways_through_the_api",
    "sort.template": "test_sort_template_timezone_and_dry_run",
    "sort.timezone": "test_sort_template_timezone_and_dry_run",
    "sort.dry_run": "test_sort_template_timezone_and_dry_run",
    "cleanup.interval_seconds": "test_cleanup_keys",
    "cleanup.temp_max_age_hours": "test_cleanup_keys",
    "cleanup.log_retention_days": "test_cleanup_keys",
    "cleanup.batch_retention_days": "test_cleanup_keys",
    "cleanup.job_retention_days": "test_cleanup_keys",
    "cleanup.min_folder_age_seconds": "test_cleanup_keys",
    "intake.media_only": "test_media_only_off_takes_the_skipped_files",
    "library.verify_interval_days": "test_library_verify_keys",
    "library.verify_rate_mb_per_s": "test_library_verify_keys",
    "retry.max_attempts": "test_retry_keys",
    "retry.backoff_seconds": "test_retry_keys",
    "auth.enabled": "test_auth_keys",
    "auth.api_key": "test_auth_keys",
    "notify.urls": "test_notify_keys_apply_live",
    "notify.events": "test_notify_keys_apply_live",
    "notify.digest_minutes": "test_notify_keys_apply_live",
    "notify.sync_stalled_hours": "test_notify_keys_apply_live",
}


def put(svc: Any, patch: dict[str, Any]) -> list[str]:
    """PUT /api/config's code path (the route only parses JSON around it)."""
    _, restart = svc.app_state().config.update(patch)
    return restart


def waiting_file(svc: Any, name: str, size: int = 1000) -> File:
    path = svc.ctx.roots.inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(name.encode().ljust(size, b"."))
    svc.submit(path)
    return wait_until(
        lambda: File.get_or_none(
            File.rel_path == name, File.status == FileStatus.UNIQUE
        )
    )


def test_every_live_key_has_a_check() -> None:
    live = {k for k in cfg.all_keys() if not cfg.restart_required([k])}
    assert live == set(LIVE_CHECKS), (
        "a live key needs a test here (or belongs in RESTART_KEYS): "
        f"{sorted(live ^ set(LIVE_CHECKS))}"
    )
    assert all(name in globals() for name in LIVE_CHECKS.values())


def test_sort_auto_toggled_live_both_ways_through_the_api(service: Any) -> None:
    svc = service(sort={"auto": False})
    waiting_file(svc, "a.bin")
    first = batches.create_batch(svc.ctx)
    assert first is not None and svc.scheduler.interval("sort") is None
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        on = client.put("/api/config", json={"sort": {"auto": True}})
        assert on.status_code == 200 and on.json()["data"]["restart_required"] == []
        started = time.monotonic()
        # Switched on, a sort runs now, not after the sort timer's interval.
        wait_until(
            lambda: Batch.get_by_id(first.id).status == BatchStatus.SORTED,
            timeout=SORT_INTERVAL - 2,
        )
        assert time.monotonic() - started < SORT_INTERVAL
        assert svc.scheduler.interval("sort") == SORT_INTERVAL
        off = client.put("/api/config", json={"sort": {"auto": False}})
        assert off.status_code == 200
    assert svc.scheduler.interval("sort") is None
    waiting_file(svc, "b.bin")
    second = batches.create_batch(svc.ctx)
    assert second is not None
    svc.scheduler.sort_tick()  # a run planned before the switch does nothing
    svc.scheduler.batch_tick()
    assert Batch.get_by_id(second.id).status == BatchStatus.CREATED
    assert File.get(File.rel_path == "b.bin").status == FileStatus.BATCHED


def test_batch_auto_create_switches_both_ways(service: Any) -> None:
    svc = service(batch={"auto_create": False, "max_age_seconds": 0})
    waiting_file(svc, "a.bin")
    assert svc.scheduler.interval("batch") is None
    put(svc, {"batch": {"auto_create": True}})
    wait_until(lambda: Batch.select().count() == 1, timeout=5)
    assert svc.scheduler.interval("batch") == batches.timer_interval(0)
    put(svc, {"batch": {"auto_create": False}})
    assert svc.scheduler.interval("batch") is None
    waiting_file(svc, "b.bin")
    svc.scheduler.batch_tick()
    assert Batch.select().count() == 1
    assert File.get(File.rel_path == "b.bin").batch is None


def test_batch_max_age_reschedules_the_timer(service: Any) -> None:
    svc = service(batch={"auto_create": True, "max_age_seconds": 3600})
    assert svc.scheduler.interval("batch") == 30.0
    waiting_file(svc, "a.bin")
    svc.scheduler.batch_tick()
    assert Batch.select().count() == 0  # not old enough
    put(svc, {"batch": {"max_age_seconds": 0.5}})
    assert svc.scheduler.interval("batch") == batches.timer_interval(0.5) == 1.0
    wait_until(lambda: Batch.select().count() == 1, timeout=10)


def test_batch_max_size_applies_to_the_next_batch(service: Any) -> None:
    svc = service()
    waiting_file(svc, "a.bin", MB)
    waiting_file(svc, "b.bin", MB)
    put(svc, {"batch": {"max_size_gb": 1.5 * MB / 1024**3}})
    made = batches.create_batch(svc.ctx)
    assert made is not None and made.file_count == 1


def photo(path: Path, seed: int, size: tuple[int, int], quality: int) -> Path:
    img = pattern((64, 48), seed).resize(size, Image.Resampling.BICUBIC)
    img.save(path, "JPEG", quality=quality)
    return path


def test_near_duplicate_distance_applies_to_the_next_file(service: Any) -> None:
    svc = service()
    inbox = svc.ctx.roots.inbox
    for name, size, quality in (
        ("big.jpg", (1024, 768), 95),
        ("small.jpg", (400, 300), 60),
        ("smaller.jpg", (320, 240), 50),
    ):
        if name == "small.jpg":
            put(svc, {"dedup": {"near_duplicate_distance": 0}})
        if name == "smaller.jpg":
            put(svc, {"dedup": {"near_duplicate_distance": 10}})
        svc.submit(photo(inbox / name, 11, size, quality))
        wait_until(
            lambda n=name: File.get_or_none(
                File.rel_path == n, File.status == FileStatus.UNIQUE
            )
        )
    big, small, smaller = (
        File.get(File.rel_path == n) for n in ("big.jpg", "small.jpg", "smaller.jpg")
    )
    assert small.near_duplicate_of is None  # checked with the distance at 0: off
    assert smaller.near_duplicate_of in (big.id, small.id)


def test_sort_template_timezone_and_dry_run(service: Any) -> None:
    svc = service()
    path = make_plain(svc.ctx.roots.inbox / "scan.bin", b"no date inside")
    late = datetime(2024, 5, 1, 23, 30, tzinfo=UTC).timestamp()
    os.utime(path, (late, late))
    svc.submit(path)
    wait_until(lambda: File.get_or_none(File.status == FileStatus.UNIQUE))
    made = batches.create_batch(svc.ctx)
    assert made is not None

    def planned() -> str:
        job = svc.jobs.run_inline("sort", lambda h: sort.sort_job(svc.ctx, h))
        result = json.loads(job.result)
        assert result["dry_run"] is True
        (entry,) = result["batches"][0]["planned"]
        return str(Path(entry["target"]).relative_to(svc.ctx.roots.sorted_dir))

    put(svc, {"sort": {"dry_run": True, "timezone": "UTC"}})
    assert planned() == "2024/05/01/scan.bin"
    put(svc, {"sort": {"timezone": "Asia/Tokyo"}})
    assert planned() == "2024/05/02/scan.bin"
    assert File.get(File.rel_path == "scan.bin").status == FileStatus.BATCHED
    put(svc, {"sort": {"template": "{year}/{kind}", "dry_run": False}})
    svc.jobs.run_inline("sort", lambda h: sort.sort_job(svc.ctx, h))
    row = File.get(File.rel_path == "scan.bin")
    assert row.status == FileStatus.SORTED
    assert Path(row.current_path) == svc.ctx.roots.sorted_dir / "2024/other/scan.bin"


def test_cleanup_keys(service: Any) -> None:
    svc = service()
    roots = svc.ctx.roots
    hours_ago = time.time() - 2 * 3600
    days_ago = time.time() - 3 * 86400
    temp = make_plain(roots.temp_dir / f"{TEMP_PREFIX}scratch.bin")
    os.utime(temp, (hours_ago, hours_ago))
    log = make_plain(roots.log_dir / "media-pipeline.2020-01-01_00-00-00.log")
    os.utime(log, (days_ago, days_ago))
    (roots.inbox / "emptied").mkdir()
    folder = roots.batch_dir / "batch_000009"
    make_plain(folder / "manifest.json", b"{}")
    old = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=3)
    svc.ctx.writer.call(
        lambda: (
            Batch.create(
                id=9,
                name="batch_000009",
                status=BatchStatus.SORTED,
                sorted_at=old,
                location=str(folder),
            ),
            Job.create(kind="sort", status=JobStatus.DONE, finished_at=old),
        )
    )

    def planned() -> set[str]:
        return {
            a.action for a in run_cleanup(svc.ctx, dry_run=True) if a.action != "skip"
        }

    before = planned()
    for action in (
        "remove_temp",
        "remove_log",
        "remove_empty_dir",
        "remove_batch_folder",
        "delete_jobs",
    ):
        assert action not in before
    put(svc, {"cleanup": {"temp_max_age_hours": 1}})
    assert "remove_temp" in planned()
    put(svc, {"cleanup": {"log_retention_days": 1}})
    assert "remove_log" in planned()
    put(svc, {"cleanup": {"min_folder_age_seconds": 0}})
    assert "remove_empty_dir" in planned()
    put(svc, {"cleanup": {"batch_retention_days": 1}})
    assert "remove_batch_folder" in planned()
    put(svc, {"cleanup": {"job_retention_days": 1}})
    assert "delete_jobs" in planned()
    assert svc.scheduler.interval("cleanup") == 3600
    assert put(svc, {"cleanup": {"interval_seconds": 120}}) == []
    assert svc.scheduler.interval("cleanup") == 120


def test_media_only_off_takes_the_skipped_files(service: Any) -> None:
    svc = service(intake={"media_only": True})
    notes = make_plain(svc.ctx.roots.inbox / "notes.txt", b"list\n")
    svc.submit(notes)
    wait_until(lambda: File.get_or_none(File.status == FileStatus.SKIPPED))
    put(svc, {"intake": {"media_only": False}})
    row = wait_until(
        lambda: File.get_or_none(File.rel_path == "notes.txt", File.status == "UNIQUE")
    )
    assert row.current_path == str(notes) and row.sha256 is not None


def test_auth_keys(service: Any) -> None:
    svc = service()
    make_jpeg(svc.ctx.roots.inbox / "p.jpg", seed=1)
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/api/files").status_code == 200
        put(svc, {"auth": {"enabled": True, "api_key": KEY}})
        assert client.get("/api/files").status_code == 401
        assert client.get("/api/files", headers={"X-API-Key": KEY}).status_code == 200
        put(svc, {"auth": {"api_key": KEY + "2"}})
        assert client.get("/api/files", headers={"X-API-Key": KEY}).status_code == 401
        ok = client.get("/api/files", headers={"X-API-Key": KEY + "2"})
        assert ok.status_code == 200


def test_retry_keys(service: Any) -> None:
    """A failure uses the retry.* values in force when it happens."""
    svc = service()
    waiting_file(svc, "a.bin")
    made = batches.create_batch(svc.ctx)
    assert made is not None
    assert put(svc, {"retry": {"backoff_seconds": 1000}}) == []
    sorted_dir = svc.ctx.roots.sorted_dir
    sorted_dir.rmdir()  # the library disk is not mounted
    sort.sort_batch(svc.ctx, Batch.get_by_id(made.id))
    row = File.get(File.rel_path == "a.bin")
    assert (row.status, row.error_stage) == (FileStatus.ERROR, "sort")
    wait = (row.next_retry_at - row.updated_at).total_seconds()
    assert 750 <= wait <= 1250, wait
    assert put(svc, {"retry": {"max_attempts": 0}}) == []
    svc.ctx.writer.call(lambda: retry.request_retry(db_conn(), svc.ctx.clock()))
    assert retry.run_due(svc.ctx) == {"retried": 1, "failed_again": 1, "missing": 0}
    row = File.get_by_id(row.id)
    assert row.status == FileStatus.ERROR and row.next_retry_at is None
    sorted_dir.mkdir()
    svc.ctx.writer.call(lambda: retry.request_retry(db_conn(), svc.ctx.clock()))
    assert retry.run_due(svc.ctx) == {"retried": 1, "failed_again": 0, "missing": 0}
    assert File.get_by_id(row.id).status == FileStatus.SORTED
    assert Batch.get_by_id(made.id).status == BatchStatus.SORTED


def test_library_verify_keys(service: Any) -> None:
    svc = service(library={"verify_interval_days": 0})
    make_jpeg(svc.ctx.roots.sorted_dir / "p.jpg", seed=1)
    job = svc.jobs.run_inline("adopt", lambda h: adopt_job(svc.ctx, h, []))
    assert job.status == JobStatus.DONE
    svc.ctx.clock = lambda: datetime.now(UTC).replace(tzinfo=None) + timedelta(days=2)
    svc.scheduler.verify_tick()  # 0 = off
    assert not Job.select().where(Job.kind == "verify").exists()
    put(svc, {"library": {"verify_interval_days": 1, "verify_rate_mb_per_s": 7}})
    svc.scheduler.verify_tick()
    job = wait_until(
        lambda: Job.get_or_none(Job.kind == "verify", Job.status == JobStatus.DONE)
    )
    assert json.loads(job.params)["rate_mb_per_s"] == 7


def test_notify_keys_apply_live(service: Any, monkeypatch: Any) -> None:
    from tests.daemon.test_alerts import JsonReceiver, _fail_hash

    receiver = JsonReceiver()
    try:
        svc = service()
        assert (
            put(
                svc,
                {
                    "notify": {
                        "urls": [receiver.url()],
                        "events": ["error"],
                        "digest_minutes": 0.01,
                        "sync_stalled_hours": 0.5,
                    }
                },
            )
            == []
        )
        alerts = svc.ctx.alerts
        assert alerts._settings().sync_stalled_hours == 0.5
        _fail_hash(monkeypatch)
        waiting = svc.ctx.roots.inbox / "live.bin"
        waiting.write_bytes(b"live" * 100)
        svc.submit(waiting)
        wait_until(lambda: receiver.titles() == ["A file failed"])
        alerts.event("recovered", "not chosen", "events is error only")
        alerts.event("error", "chosen", "still told")
        wait_until(lambda: "chosen" in receiver.titles())
        assert "not chosen" not in receiver.titles()
    finally:
        receiver.close()
