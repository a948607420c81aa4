"""The hash stage and a failing item's record, on a context without the daemon."""

from __future__ import annotations

import errno
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline import hash_stage, hashing
from pipeline.context import Context
from pipeline.hash_stage import hash_item, hash_many
from pipeline.intake import EMPTY, Item, register
from pipeline.models import File, FileStatus, utcnow
from pipeline.stages import record_error
from pipeline.store import db_conn, set_file_status
from tests.pipeline.mediafixtures import make_jpeg, make_plain


def registered(ctx: Context, path: Path) -> Item:
    item = register(ctx, path)
    assert item is not None
    assert File.get_by_id(item.file_id).status == FileStatus.NEW
    return item


def three_registered(ctx: Context) -> list[Item]:
    return [
        registered(ctx, make_jpeg(ctx.roots.inbox / f"{n}.jpg", seed=n))
        for n in range(3)
    ]


def test_hashed_file_moves_to_hashed_with_both_hashes(ctx: Context) -> None:
    path = make_jpeg(ctx.roots.inbox / "IMG_1.jpg", seed=1)
    item = registered(ctx, path)
    assert hash_item(ctx, item) is item
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert item.sha256 == expected and item.phash is not None
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.HASHED
    assert (row.sha256, row.phash) == (expected, item.phash)
    assert row.size == path.stat().st_size


def test_a_second_announcement_changes_nothing(ctx: Context) -> None:
    path = make_jpeg(ctx.roots.inbox / "IMG_2.jpg", seed=2)
    item = registered(ctx, path)
    assert hash_item(ctx, item) is not None
    twin = Item(item.file_id, item.path)  # the watcher saw the file again
    assert hash_item(ctx, twin) is None
    assert File.get_by_id(item.file_id).status == FileStatus.HASHED


def test_empty_file_becomes_skipped_and_stays(ctx: Context) -> None:
    path = make_plain(ctx.roots.inbox / "IMG_3.jpg")
    item = registered(ctx, path)
    path.write_bytes(b"")
    assert hash_item(ctx, item) is None
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.SKIPPED and row.error == EMPTY and row.size == 0
    assert path.exists()


def test_undecodable_image_goes_on_without_a_phash(ctx: Context) -> None:
    whole = make_jpeg(ctx.roots.inbox.parent / "whole.jpg", seed=4, size=(640, 480))
    data = whole.read_bytes()
    path = ctx.roots.inbox / "IMG_4.jpg"
    path.write_bytes(data[: len(data) // 3])  # cut off: the header, no image
    item = registered(ctx, path)
    assert hash_item(ctx, item) is item
    assert item.phash is None
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.HASHED and row.phash is None
    assert row.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_file_changed_while_hashed_stays_new(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_jpeg(ctx.roots.inbox / "IMG_5.jpg", seed=5)
    item = registered(ctx, path)
    read, grown = hashing._read_chunk, []

    def growing(fd: int, view: memoryview) -> int:
        n = read(fd, view)
        if n and not grown:
            grown.append(n)
            with open(path, "ab") as more:  # still arriving
                more.write(b"\0" * 10)
        return n

    monkeypatch.setattr(hashing, "_read_chunk", growing)
    assert hash_item(ctx, item) is None
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.NEW and row.sha256 is None
    monkeypatch.undo()
    assert hash_item(ctx, item) is item  # the retry, once it has settled
    assert File.get_by_id(item.file_id).status == FileStatus.HASHED


def test_file_gone_while_hashed_leaves_no_row(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_jpeg(ctx.roots.inbox / "IMG_6.jpg", seed=6)
    item = registered(ctx, path)
    read = hashing._read_chunk

    def vanishing(fd: int, view: memoryview) -> int:
        if path.exists():
            path.unlink()  # moved away by its owner mid-read
        return read(fd, view)

    monkeypatch.setattr(hashing, "_read_chunk", vanishing)
    assert hash_item(ctx, item) is None
    assert File.get_or_none(File.id == item.file_id) is None


# record_error -----------------------------------------------------------------


def test_transient_failure_is_error_with_a_retry_time(ctx: Context) -> None:
    item = registered(ctx, make_plain(ctx.roots.inbox / "a.jpg"))
    before = utcnow()
    record_error(ctx, item, "hash", OSError(errno.ENOSPC, "No space left on device"))
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.ERROR and row.error_stage == "hash"
    assert row.error == "hash: [Errno 28] No space left on device"
    backoff = ctx.settings.retry.backoff_seconds
    assert row.next_retry_at is not None
    assert before + timedelta(seconds=backoff / 2) <= row.next_retry_at
    assert row.next_retry_at <= utcnow() + timedelta(seconds=backoff * 2)
    assert Path(row.current_path).exists()


def test_lasting_failure_waits_for_a_retry_request(ctx: Context) -> None:
    item = registered(ctx, make_plain(ctx.roots.inbox / "b.jpg"))
    record_error(ctx, item, "dedup", ValueError())
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.ERROR and row.error_stage == "dedup"
    assert row.error == "dedup: ValueError"  # an empty message names the type
    assert row.next_retry_at is None


def test_file_already_set_aside_keeps_its_status(ctx: Context) -> None:
    item = registered(ctx, make_plain(ctx.roots.inbox / "c.jpg"))
    ctx.writer.call(
        lambda: set_file_status(db_conn(), item.file_id, FileStatus.SKIPPED)
    )
    record_error(ctx, item, "dedup", OSError(errno.EIO, "I/O error"))
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.SKIPPED and row.error_stage is None


def test_an_item_that_is_no_file_is_only_logged(ctx: Context) -> None:
    path = make_plain(ctx.roots.inbox / "d.jpg")
    record_error(ctx, path, "register", PermissionError(errno.EACCES, "denied"))
    assert File.select().count() == 0
    assert os.path.exists(path)


def test_a_group_is_recorded_in_one_write_and_an_unreadable_file_fails_alone(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, writer_calls: list[int]
) -> None:
    items = three_registered(ctx)
    real = hash_stage.sha256_file

    def eio_for_the_second(path: Path) -> hashing.Digest:
        if path == items[1].path:
            raise OSError(errno.EIO, "I/O error")
        return real(path)

    monkeypatch.setattr(hash_stage, "sha256_file", eio_for_the_second)
    beats: list[None] = []
    monkeypatch.setattr(hash_stage, "heartbeat", lambda: beats.append(None))
    writer_calls[0] = 0
    twice = Item(items[0].file_id, items[0].path)  # a second announcement
    outcomes = hash_many(ctx, [*items, twice])
    assert outcomes[0] is items[0] and outcomes[2] is items[2]
    assert isinstance(outcomes[1], OSError)
    assert outcomes[3] is None  # announced twice: goes on once
    assert writer_calls == [1]
    assert len(beats) == 4  # the stall clock restarts for every file of the group
    rows = [File.get_by_id(i.file_id) for i in items]
    assert [r.status for r in rows] == [
        FileStatus.HASHED,
        FileStatus.NEW,
        FileStatus.HASHED,
    ]
    assert rows[0].sha256 == hashlib.sha256(items[0].path.read_bytes()).hexdigest()
    with pytest.raises(OSError):
        hash_item(ctx, items[1])  # alone, the failure is raised to the caller


def test_a_group_that_hashes_for_long_is_recorded_as_it_goes(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, writer_calls: list[int]
) -> None:
    items = three_registered(ctx)
    # Every file "takes" the whole allowance: each is recorded once hashed, so a
    # kill -9 during the next one loses only that one.
    monkeypatch.setattr(hash_stage, "RECORD_EVERY_SECONDS", 0.0)
    recorded: list[FileStatus] = []
    real = hash_stage.sha256_file

    def watching(path: Path) -> hashing.Digest:
        recorded.extend(File.get_by_id(i.file_id).status for i in items)
        return real(path)

    monkeypatch.setattr(hash_stage, "sha256_file", watching)
    writer_calls[0] = 0
    assert hash_many(ctx, items) == items
    assert writer_calls == [3]
    new, hashed = FileStatus.NEW, FileStatus.HASHED
    # What each file's read saw: the ones before it already recorded.
    assert recorded == [new, new, new, hashed, new, new, hashed, hashed, new]
