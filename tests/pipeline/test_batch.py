"""Batches: size bound, oldest first, manifests checkable with sha256sum, no empty batch."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from pipeline import batch as batches
from pipeline.models import Batch, BatchStatus, File, FileStatus
from tests.conftest import wait_until

MB = 1024 * 1024


def accept(svc: Any, rel: str, size: int) -> File:
    """A real file in the inbox with a UNIQUE row, as the dedup stage leaves it."""
    path = svc.ctx.roots.inbox / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rel.encode().ljust(size, b"."))
    svc.submit(path)
    wait_until(
        lambda: File.get_or_none(File.rel_path == rel, File.status == FileStatus.UNIQUE)
    )
    return File.get(File.rel_path == rel)


def test_batches_respect_the_size_limit_oldest_first(service: Any) -> None:
    svc = service(batch={"max_size_gb": 2.5 * MB / 1024**3})
    names = [f"d{n}/f{n}.bin" for n in range(5)]
    for name in names:
        accept(svc, name, MB)
        time.sleep(0.01)
    first = batches.create_batch(svc.ctx)
    second = batches.create_batch(svc.ctx)
    third = batches.create_batch(svc.ctx)
    assert batches.create_batch(svc.ctx) is None  # nothing waits: no empty batch
    assert [b.file_count for b in (first, second, third)] == [2, 2, 1]
    assert [b.name for b in (first, second, third)] == [
        "batch_000001",
        "batch_000002",
        "batch_000003",
    ]
    folder = svc.ctx.roots.batch_dir / "batch_000001"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == names[:2]  # relative to the inbox
    assert manifest["size_bytes"] == 2 * MB and manifest["batch"] == "batch_000001"
    assert set(manifest["files"][0]) == {
        "path",
        "size",
        "sha256",
        "capture_time",
        "original_path",
    }
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    rows = File.select().where(File.batch == first.id)
    assert {r.status for r in rows} == {FileStatus.BATCHED}
    assert all(Path(r.current_path).is_relative_to(folder) for r in rows)
    assert first.status == BatchStatus.CREATED


def test_a_file_larger_than_the_limit_gets_its_own_batch(service: Any) -> None:
    svc = service(batch={"max_size_gb": MB / 1024**3})
    accept(svc, "huge.bin", 3 * MB)
    accept(svc, "small.bin", 1000)
    big = batches.create_batch(svc.ctx)
    small = batches.create_batch(svc.ctx)
    assert (big.file_count, big.size_bytes) == (1, 3 * MB)
    assert small.file_count == 1


def test_override_size_and_auto_create_by_age(service: Any) -> None:
    svc = service(batch={"max_size_gb": 10, "max_age_seconds": 3600})
    for n in range(3):
        accept(svc, f"f{n}.bin", 100)
    assert batches.auto_create(svc.ctx) == []  # neither full nor old
    made = batches.create_batch(svc.ctx, max_size_gb=150 / 1024**3)
    assert made.file_count == 1
    svc.ctx.settings.batch.max_age_seconds = 0
    assert [b.file_count for b in batches.auto_create(svc.ctx)] == [2]


def test_auto_batch_timer_fires_without_new_files(service: Any) -> None:
    svc = service(batch={"auto_create": True, "max_age_seconds": 1})
    accept(svc, "lonely.bin", 10)
    wait_until(
        lambda: Batch.get_or_none(Batch.status == BatchStatus.CREATED), timeout=15
    )
    assert Batch.select().count() == 1


def test_vanished_file_is_left_out_and_reported(service: Any) -> None:
    svc = service()
    gone = accept(svc, "gone.bin", 10)
    accept(svc, "kept.bin", 10)
    Path(gone.current_path).unlink()
    made = batches.create_batch(svc.ctx)
    assert made.file_count == 1
    assert File.get_by_id(gone.id).status == FileStatus.ERROR


def test_building_batch_is_finished_after_a_crash(service: Any) -> None:
    svc = service()
    files = [accept(svc, f"f{n}.bin", 10) for n in range(3)]
    claimed = svc.ctx.writer.call(lambda: batches._claim(files))
    # Crash after one file moved in: the rest are still UNIQUE, no manifest yet.
    one = files[0]
    dst = svc.ctx.roots.batch_dir / claimed.name / one.rel_path
    from pipeline.fsops import MoveRequest

    svc.ctx.mover.move(
        MoveRequest(Path(one.current_path), dst, one.id, FileStatus.BATCHED)
    )
    assert Batch.get_by_id(claimed.id).status == batches.BUILDING
    done = batches.resume_building(svc.ctx)
    assert [b.status for b in done] == [BatchStatus.CREATED]
    assert done[0].file_count == 3
    assert (svc.ctx.roots.batch_dir / claimed.name / "SHA256SUMS").exists()


def test_a_manifest_write_cut_short_leaves_no_temp_file(service: Any) -> None:
    """Found by tests/integration/test_chaos.py: a kill mid-write left the temp file."""
    svc = service()
    files = [accept(svc, f"f{n}.bin", 10) for n in range(2)]
    claimed = svc.ctx.writer.call(lambda: batches._claim(files))
    folder = svc.ctx.roots.batch_dir / claimed.name
    folder.mkdir(parents=True)
    cut = folder / ".mp-partial-0badcafe-manifest.json"
    cut.write_text('{"batch": "batch_0')  # the write the kill interrupted
    (folder / ".mp-partial-0badcafe-SHA256SUMS").write_text("")
    (done,) = batches.resume_building(svc.ctx)
    assert done.status == BatchStatus.CREATED
    assert sorted(p.name for p in folder.iterdir()) == [
        "SHA256SUMS",
        "f0.bin",
        "f1.bin",
        "manifest.json",
    ]
    assert json.loads((folder / "manifest.json").read_text())["file_count"] == 2


def test_sha256sums_escapes_names_like_gnu_sha256sum(service: Any) -> None:
    svc = service()
    for name in ("back\\slash.bin", "new\nline.bin", "plain name.bin"):
        accept(svc, name, 100)
    made = batches.create_batch(svc.ctx)
    folder = svc.ctx.roots.batch_dir / made.name
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=folder, capture_output=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert (folder / "SHA256SUMS").read_text().count("\n") == 3


def test_a_file_named_like_the_manifest_is_not_overwritten(service: Any) -> None:
    # A Takeout-style `manifest.json` (a sidecar, taken in even with media_only) or a
    # `SHA256SUMS` at the top of the inbox would land where the batch writes its own.
    svc = service()
    theirs = {"manifest.json": b'{"mine": true}\n', "SHA256SUMS": b"my own sums\n"}
    for name, content in theirs.items():
        (svc.ctx.roots.inbox / name).write_bytes(content)
        svc.submit(svc.ctx.roots.inbox / name)
    wait_until(
        lambda: File.select().where(File.status == FileStatus.UNIQUE).count() == 2
    )
    made = batches.create_batch(svc.ctx)
    assert made is not None and made.file_count == 2
    folder = svc.ctx.roots.batch_dir / made.name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["batch"] == made.name
    for name, content in theirs.items():
        row = File.get(File.rel_path == name)
        assert row.status == FileStatus.BATCHED
        assert Path(row.current_path).read_bytes() == content  # still theirs
        assert Path(row.current_path).parent == folder
    check = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=folder, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_due_in_says_when_the_next_batch_is_due(service: Any) -> None:
    svc = service(batch={"max_size_gb": 10, "max_age_seconds": 3600})
    assert batches.due_in(svc.ctx) is None  # nothing waits
    accept(svc, "a.bin", 100)
    assert 3590 < (batches.due_in(svc.ctx) or 0) <= 3600
    svc.ctx.settings.batch.max_age_seconds = 0
    assert batches.due_in(svc.ctx) == 0.0  # old enough now
    svc.ctx.settings.batch.max_age_seconds = 3600
    svc.ctx.settings.batch.max_size_gb = 50 / 1024**3
    assert batches.due_in(svc.ctx) == 0.0  # full
