"""Intake with the real watcher: settle, volume, duplicates, near-duplicates, hostile files."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from pipeline.models import File, FileStatus
from pipeline.scan import scan_inbox
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import make_jpeg, pattern

WATCH = {"watcher": {"enabled": True, "settle_seconds": 0.3}}


def rows() -> list[File]:
    return list(File.select().order_by(File.id))


def statuses() -> dict[str, str]:
    return {Path(r.original_path).name: r.status for r in rows()}


def settled(n: int) -> bool:
    done = (
        File.select()
        .where(File.status.not_in((FileStatus.NEW, FileStatus.HASHED)))
        .count()
    )
    return done >= n


class OpenSpy(FileSystemEventHandler):
    """Records every open of a file under a folder (inotify IN_OPEN)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.observer = Observer()

    def on_opened(self, event: FileSystemEvent) -> None:
        if not event.is_directory:
            self.events.append(str(event.src_path))

    def opened(self) -> list[str]:
        """Opens of anything but the probe this spy itself wrote."""
        return [e for e in self.events if not e.endswith("probe.txt")]

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(5)


def spy_on_opens(folder: Path) -> OpenSpy:
    spy = OpenSpy()
    spy.observer.schedule(spy, str(folder), recursive=True)
    spy.observer.start()
    probe = folder / "probe.txt"
    probe.write_text("x")
    probe.read_text()
    wait_until(lambda: any("probe.txt" in e for e in spy.events), timeout=5)
    return spy


def photo(
    path: Path, seed: int, size: tuple[int, int] = (640, 480), quality: int = 92
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = pattern((64, 48), seed).resize(size, Image.Resampling.BICUBIC)
    img.save(path, "JPEG", quality=quality)
    return path


def test_slowly_written_file_is_taken_once_and_complete(service: Any) -> None:
    # Pauses 30x shorter than the settle time, so a loaded machine that stretches
    # a sleep several-fold still never lets the half-written file look settled.
    svc = service(watcher={"enabled": True, "settle_seconds": 1.5})
    inbox = svc.ctx.roots.inbox
    data = photo(inbox.parent / "src.jpg", 1).read_bytes()
    target = inbox / "slow.jpg"
    with open(target, "wb") as out:
        for start in range(0, len(data), len(data) // 8 + 1):
            out.write(data[start : start + len(data) // 8 + 1])
            out.flush()
            time.sleep(0.05)
    wait_until(lambda: settled(1), timeout=30)
    (row,) = rows()
    assert row.status == FileStatus.UNIQUE and row.size == len(data)
    svc.watcher.scan()  # a full rescan must not take it a second time
    wait_until(lambda: svc.runner.pending() == 0)
    assert File.select().count() == 1


def test_two_thousand_files_at_once(service: Any, tmp_path: Path) -> None:
    svc = service(**WATCH)
    staging = tmp_path / "staging"
    staging.mkdir()
    for n in range(2000):
        (staging / f"f{n:04d}.bin").write_bytes(f"file {n}".encode())
    os.rename(staging, svc.ctx.roots.inbox / "drop")
    wait_until(lambda: settled(2000), timeout=120, interval=0.2)
    assert File.select().where(File.status == FileStatus.UNIQUE).count() == 2000


def test_same_content_twice_gives_one_unique_one_duplicate(service: Any) -> None:
    svc = service(**WATCH)
    inbox = svc.ctx.roots.inbox
    content = photo(inbox / "a" / "IMG_1.jpg", 7).read_bytes()
    (inbox / "b").mkdir()
    (inbox / "b" / "IMG_1.jpg").write_bytes(content)
    wait_until(lambda: settled(2), timeout=15)
    by_status = sorted(r.status for r in rows())
    assert by_status == [FileStatus.DUPLICATE, FileStatus.UNIQUE]
    dup = File.get(File.status == FileStatus.DUPLICATE)
    kept = File.get(File.status == FileStatus.UNIQUE)
    assert dup.duplicate_of == kept.id
    assert Path(dup.current_path).is_relative_to(svc.ctx.roots.duplicates_dir)
    assert Path(dup.current_path).read_bytes() == content
    assert len(list(svc.ctx.roots.inbox.rglob("*.jpg"))) == 1


def test_identical_files_arriving_together_race_free(service: Any) -> None:
    svc = service()
    inbox = svc.ctx.roots.inbox
    src = photo(inbox / "orig.jpg", 3)
    copies = [src] + [Path(shutil.copy(src, inbox / f"copy{n}.jpg")) for n in range(7)]
    threads = [threading.Thread(target=svc.submit, args=(p,)) for p in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: settled(8), timeout=15)
    assert sorted(r.status for r in rows()).count(FileStatus.UNIQUE) == 1


def test_resized_recompressed_copy_is_flagged_near_duplicate(service: Any) -> None:
    svc = service(**WATCH)
    inbox = svc.ctx.roots.inbox
    photo(inbox / "big.jpg", 11, size=(1024, 768), quality=95)
    wait_until(lambda: settled(1), timeout=15)
    photo(inbox / "small.jpg", 11, size=(400, 300), quality=60)
    photo(inbox / "other.jpg", 12)
    wait_until(lambda: settled(3), timeout=15)
    big, small, other = (
        File.get(File.rel_path == n) for n in ("big.jpg", "small.jpg", "other.jpg")
    )
    assert small.status == FileStatus.UNIQUE and small.near_duplicate_of == big.id
    assert small.near_distance is not None and small.near_distance <= 6
    assert other.near_duplicate_of is None
    assert Path(small.current_path).exists()  # flagged for review, never moved


def test_files_dropped_while_stopped_are_taken_at_start(
    service: Any, tmp_path: Path
) -> None:
    first = service(**WATCH)
    inbox = first.ctx.roots.inbox
    first.stop()
    photo(inbox / "while-down.jpg", 21)
    (inbox / "deep" / "er").mkdir(parents=True)
    photo(inbox / "deep" / "er" / "x.jpg", 22)
    second = service(**WATCH)
    wait_until(lambda: settled(2), timeout=15)
    assert {r.rel_path for r in rows()} == {"while-down.jpg", "deep/er/x.jpg"}
    assert second.healthy()


def test_hostile_files_never_block_and_nothing_outside_is_read(
    service: Any, tmp_path: Path
) -> None:
    svc = service(intake={"media_only": True}, **WATCH)
    inbox = svc.ctx.roots.inbox
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = make_jpeg(outside / "secret.jpg", seed=5)
    opened = spy_on_opens(outside)
    os.mkfifo(inbox / "fifo.jpg")
    (inbox / "link.jpg").symlink_to(secret)
    (inbox / "dirlink").symlink_to(outside, target_is_directory=True)
    (inbox / "loop.jpg").symlink_to(inbox / "loop.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(inbox / "sock.jpg"))
    (inbox / "empty.jpg").write_bytes(b"")
    (inbox / "text.jpg").write_text("this is not a photo")
    whole = photo(tmp_path / "whole.jpg", 31).read_bytes()
    (inbox / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (inbox / "notes.txt").write_text("not media")
    photo(inbox / "good.jpg", 32)
    try:
        wait_until(lambda: settled(5), timeout=15)
        found = statuses()
        # Undecodable "images" are still the owner's files: kept, without a pHash.
        assert found == {
            "empty.jpg": FileStatus.SKIPPED,
            "notes.txt": FileStatus.SKIPPED,
            "text.jpg": FileStatus.UNIQUE,
            "truncated.jpg": FileStatus.UNIQUE,
            "good.jpg": FileStatus.UNIQUE,
        }
        phashes = {Path(r.original_path).name: r.phash for r in rows()}
        assert phashes["text.jpg"] is None and phashes["truncated.jpg"] is None
        skipped = {Path(r.original_path).name: r.error for r in rows() if r.error}
        assert "empty" in skipped["empty.jpg"] and "media_only" in skipped["notes.txt"]
        assert all((inbox / name).exists() for name in skipped)  # left in place
        assert svc.healthy()
        assert File.select().where(File.original_path.contains("outside")).count() == 0
        assert opened.opened() == [], "a file outside the inbox was opened"
    finally:
        sock.close()
        opened.stop()


def test_rescan_job_changes_nothing(service: Any) -> None:
    svc = service(**WATCH)
    inbox = svc.ctx.roots.inbox
    for n in range(5):
        photo(inbox / f"p{n}.jpg", 40 + n)
    shutil.copy(inbox / "p0.jpg", inbox / "p0-copy.jpg")
    wait_until(lambda: settled(6), timeout=15)
    snapshot = [(r.id, r.status, r.current_path, r.sha256) for r in rows()]

    class Handle:
        def set_total(self, n: int) -> None: ...

        def advance(self, done: int = 1, errors: int = 0) -> None: ...

    for _ in range(2):
        result = scan_inbox(svc.ctx, Handle())  # type: ignore[arg-type]
        assert result["processed"] == 0
    assert [(r.id, r.status, r.current_path, r.sha256) for r in rows()] == snapshot
