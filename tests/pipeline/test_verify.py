"""Verify finds missing, changed and moved library files, and never touches them."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from pipeline import adopt, batch, sort, verify
from pipeline.models import File, FileStatus, Job, JobStatus, VerifyRun, utcnow
from pipeline.scan import scan_inbox
from pipeline.syncthing import SyncthingClient
from tests.conftest import wait_until
from tests.pipeline.test_adopt import photo, snapshot

MISSING, CORRUPT = verify.MISSING, verify.CORRUPT


def run_verify(svc: Any, hash_all: bool = False) -> dict[str, Any]:
    job = svc.jobs.run_inline(
        "verify", lambda h: verify.verify_job(svc.ctx, h, hash_all=hash_all)
    )
    assert job.status == JobStatus.DONE, job.message
    return json.loads(Job.get_by_id(job.id).result)


def adopted_library(svc: Any, n: int = 12) -> list[Path]:
    library = svc.ctx.roots.sorted_dir
    paths = [photo(library / f"{2020 + k % 3}" / f"p{k:02d}.jpg", k) for k in range(n)]
    job = svc.jobs.run_inline("adopt", lambda h: adopt.adopt_job(svc.ctx, h, []))
    assert job.status == JobStatus.DONE
    return paths


def flip_a_bit(path: Path, offset: int = 200) -> None:
    """Change one bit, keeping size and mtime (what bit rot looks like)."""
    st = os.stat(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def status_of(path: Path) -> str:
    return File.get(File.original_path == str(path)).status


def test_deleted_flipped_and_moved_files(service: Any) -> None:
    svc = service()
    paths = adopted_library(svc)
    library = svc.ctx.roots.sorted_dir
    gone, flipped, moved = paths[1], paths[2], paths[3]
    original_bytes = flipped.read_bytes()
    original_sha = hashlib.sha256(original_bytes).hexdigest()
    gone_bytes = gone.read_bytes()
    gone.unlink()
    flip_a_bit(flipped)
    new_home = library / "elsewhere" / "renamed.jpg"
    new_home.parent.mkdir()
    os.rename(moved, new_home)
    before = snapshot(library)

    quick = run_verify(svc)  # size and mtime only: the flipped bit is not seen
    assert quick["checked"] == len(paths)
    assert (quick["new_missing"], quick["new_corrupt"]) == (1, 0)
    assert status_of(gone) == MISSING
    assert status_of(flipped) == FileStatus.SORTED
    moved_row = File.get(File.original_path == str(moved))
    assert moved_row.status == FileStatus.SORTED
    assert moved_row.current_path == str(new_home)
    assert quick["moved"] == [
        {"file_id": moved_row.id, "from": str(moved), "to": str(new_home)}
    ]

    full = run_verify(svc, hash_all=True)
    assert (full["new_missing"], full["new_corrupt"]) == (0, 1)
    assert full["bytes_read"] >= sum(p.stat().st_size for p in library.rglob("*.jpg"))
    row = File.get(File.original_path == str(flipped))
    assert row.status == CORRUPT
    assert row.sha256 == original_sha  # the last-known hash is kept
    listed = {f["path"]: f for f in full["findings"]}
    assert set(listed) == {str(gone), str(flipped)}
    assert listed[str(flipped)]["sha256"] == original_sha
    assert listed[str(gone)]["status"] == MISSING
    assert listed[str(gone)]["batch"] is None  # adopted: no batch
    assert listed[str(gone)]["copies"] == [] and listed[str(flipped)]["copies"] == []
    # Nothing deleted, overwritten or moved back by verify.
    assert snapshot(library) == before
    assert flipped.read_bytes() != original_bytes

    last = verify.last_run()
    assert last is not None and last["hashed"] is True
    assert (last["missing_now"], last["corrupt_now"], last["ok"]) == (1, 1, False)

    # Restored by the owner: both go back to SORTED.
    flipped.write_bytes(original_bytes)
    gone.write_bytes(gone_bytes)
    row = File.get(File.original_path == str(gone))
    os.utime(gone, ns=(row.mtime_ns, row.mtime_ns))
    again = run_verify(svc, hash_all=True)
    assert again["restored"] == 2 and again["findings"] == []
    assert status_of(gone) == status_of(flipped) == FileStatus.SORTED
    assert verify.last_run()["ok"] is True


def test_touched_file_with_same_content_is_not_corrupt(service: Any) -> None:
    svc = service()
    paths = adopted_library(svc, 3)
    os.utime(paths[0], ns=(1, 1_500_000_000_000_000_000))
    result = run_verify(svc)
    assert result["new_corrupt"] == 0 and result["findings"] == []
    assert File.get(File.original_path == str(paths[0])).mtime_ns == (
        1_500_000_000_000_000_000
    )
    paths[1].write_bytes(paths[1].read_bytes() + b"appended")
    result = run_verify(svc)  # a different size needs no hash to be seen
    assert result["new_corrupt"] == 1
    assert status_of(paths[1]) == CORRUPT


def test_a_file_replaced_by_a_symlink_is_missing(service: Any, tmp_path: Path) -> None:
    svc = service()
    paths = adopted_library(svc, 2)
    outside = photo(tmp_path / "outside.jpg", 1)  # same content as p01
    paths[1].unlink()
    paths[1].symlink_to(outside)
    result = run_verify(svc, hash_all=True)
    assert result["new_missing"] == 1 and status_of(paths[1]) == MISSING


def sorted_through_the_pipeline(svc: Any) -> File:
    photo(svc.ctx.roots.inbox / "trip" / "a.jpg", 42)
    assert svc.jobs.run_inline("dedup", lambda h: scan_inbox(svc.ctx, h)).status == (
        JobStatus.DONE
    )
    made = batch.create_batch(svc.ctx)
    assert made is not None
    sort.sort_batch(svc.ctx, made)
    row = File.get(File.rel_path == "trip/a.jpg")
    assert row.status == FileStatus.SORTED
    return row


def test_corrupt_sorted_file_is_listed_with_its_batch_and_manifest(
    service: Any,
) -> None:
    svc = service()
    row = sorted_through_the_pipeline(svc)
    flip_a_bit(Path(row.current_path))
    result = run_verify(svc, hash_all=True)
    (finding,) = result["findings"]
    assert finding["status"] == CORRUPT and finding["file_id"] == row.id
    assert finding["batch"]["id"] == row.batch
    manifest = Path(finding["batch"]["manifest"])
    assert manifest.name == "manifest.json" and manifest.exists()
    assert finding["batch"]["entry"]["sha256"] == row.sha256
    assert finding["syncthing"] is None  # Syncthing is disabled


def test_syncthing_holding_the_original_is_reported(service: Any) -> None:
    svc = service()
    row = sorted_through_the_pipeline(svc)
    made = batch.Batch.get_by_id(row.batch)
    # As if the batch had been handed over: its folder was in sync_dir.
    location = svc.ctx.roots.sync_dir / made.name
    shutil.copytree(made.location, location)
    batch.Batch.update(location=str(location), synced_at=utcnow()).where(
        batch.Batch.id == made.id
    ).execute()
    entry = batch.read_manifest(location)["files"][0]
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["file"])
        return httpx.Response(
            200,
            json={
                "global": {"size": entry["size"], "deleted": False},
                "availability": [{"id": "REMOTE-1"}],
            },
        )

    svc.ctx.syncthing = SyncthingClient(
        "http://127.0.0.1:1", "key", transport=httpx.MockTransport(answer)
    )
    try:
        flip_a_bit(Path(row.current_path))
        (finding,) = run_verify(svc, hash_all=True)["findings"]
    finally:
        svc.ctx.syncthing.close()
        svc.ctx.syncthing = None
    assert asked == [f"{made.name}/{entry['path']}"]
    assert finding["syncthing"]["held"] is True
    assert finding["syncthing"]["devices"] == ["REMOTE-1"]


def test_due_follows_the_interval(service: Any) -> None:
    svc = service()
    now = utcnow()
    assert not verify.due(now, 30)  # nothing in the library yet
    adopted_library(svc, 1)
    assert not verify.due(now, 30)
    assert verify.due(now + timedelta(days=31), 30)
    assert not verify.due(now + timedelta(days=31), 0)  # 0 = off
    run_verify(svc, hash_all=True)
    assert not verify.due(now + timedelta(days=29), 30)
    assert verify.due(now + timedelta(days=31), 30)
    run_verify(svc, hash_all=False)  # a quick check does not reset the clock
    assert verify.due(now + timedelta(days=31), 30)
    assert VerifyRun.select().count() == 2


def test_throttle_reserves_time_at_the_rate() -> None:
    throttle = verify.Throttle(1000.0)  # bytes per second
    start = throttle._next
    throttle.consume(5)
    throttle.consume(5)
    assert throttle._next - start >= 0.01
    unlimited = verify.Throttle(0)
    before = unlimited._next
    unlimited.consume(10**9)
    assert unlimited._next == before


def test_scheduled_verify_hashes_at_the_configured_rate(service: Any) -> None:
    svc = service(library={"verify_interval_days": 1, "verify_rate_mb_per_s": 100})
    adopted_library(svc, 2)
    svc.scheduler.verify_tick()  # the library is younger than a day: not due
    assert VerifyRun.select().count() == 0
    svc.ctx.clock = lambda: utcnow() + timedelta(days=2)
    svc.scheduler.verify_tick()
    wait_until(
        lambda: VerifyRun.select().where(VerifyRun.finished_at.is_null(False)).count(),
        timeout=120,
    )
    run = VerifyRun.get()
    assert run.hashed and run.scheduled and run.checked == 2
    job = Job.get(Job.kind == "verify")
    assert json.loads(job.params) == {
        "hash": True,
        "scheduled": True,
        "rate_mb_per_s": 100,
    }
    wait_until(lambda: Job.get_by_id(job.id).status == JobStatus.DONE, timeout=120)
    svc.ctx.clock = lambda: utcnow() + timedelta(hours=12)
    svc.scheduler.verify_tick()  # verified less than a day ago: not due
    assert VerifyRun.select().count() == 1
    svc.ctx.clock = lambda: utcnow() + timedelta(days=2)
    svc.scheduler.verify_tick()  # a day later it is
    wait_until(lambda: VerifyRun.select().count() == 2, timeout=120)


def test_a_missing_file_lists_identical_copies_that_can_restore_it(
    service: Any,
) -> None:
    svc = service()
    library = svc.ctx.roots.sorted_dir
    original = photo(library / "2019" / "a.jpg", 1)
    twin = library / "backup" / "a copy.jpg"
    twin.parent.mkdir()
    shutil.copy2(original, twin)
    job = svc.jobs.run_inline("adopt", lambda h: adopt.adopt_job(svc.ctx, h, []))
    assert job.status == JobStatus.DONE
    assert File.get(File.current_path == str(twin)).status == FileStatus.DUPLICATE
    original.unlink()
    (finding,) = run_verify(svc)["findings"]
    assert finding["path"] == str(original) and finding["status"] == MISSING
    assert finding["copies"] == [str(twin)]
    twin.unlink()
    (finding,) = run_verify(svc)["findings"]
    assert finding["copies"] == []  # listed only while it is really there


def test_a_file_set_aside_while_verify_runs_keeps_its_status(
    service: Any, monkeypatch: Any
) -> None:
    # A throttled `verify --hash` checks a page's files long after reading it: the
    # owner may set one aside meanwhile (SORTED -> DUPLICATE, into duplicates_dir).
    from pipeline.fsops import MoveRequest

    svc = service()
    paths = adopted_library(svc, n=3)
    target = File.get(File.original_path == str(paths[1]))
    aside = svc.ctx.roots.duplicates_dir / "p01.jpg"
    real_check = verify.check_file

    def owner_acts_first(ctx: Any, row: Any, *args: Any) -> Any:
        if row.id == target.id:
            ctx.mover.move(
                MoveRequest(
                    row.path, aside, row.id, FileStatus.DUPLICATE, target.sha256
                )
            )
        return real_check(ctx, row, *args)

    monkeypatch.setattr(verify, "check_file", owner_acts_first)
    result = run_verify(svc, hash_all=True)
    row = File.get_by_id(target.id)
    assert (row.status, row.current_path) == (FileStatus.DUPLICATE, str(aside))
    assert result["new_missing"] == 0 and result["findings"] == []
    monkeypatch.setattr(verify, "check_file", real_check)
    again = run_verify(svc)  # nothing to find later either
    assert File.get_by_id(target.id).status == FileStatus.DUPLICATE
    assert again["findings"] == []
