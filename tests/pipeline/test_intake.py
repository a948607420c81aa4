"""Intake decisions: what is taken, what is SKIPPED, and undecodable images kept."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import batch as batches
from pipeline import hash_stage
from pipeline.context import Context
from pipeline.hashing import phash
from pipeline.intake import EMPTY, NOT_MEDIA, register, register_many, skip_reason
from pipeline.media import is_media_or_sidecar
from pipeline.models import File, FileStatus
from pipeline.sort import sort_batch
from pipeline.stages import intake_stages, run_inline
from tests.pipeline.mediafixtures import make_jpeg, make_plain


def take(ctx: Context, path: Path) -> File:
    """Push one inbox file through register → hash → dedup; its row afterwards."""
    run_inline(ctx, intake_stages(ctx), path)
    return File.get(File.original_path == str(path))


@pytest.fixture
def media_ctx(make_ctx: Callable[..., Context]) -> Context:
    return make_ctx(intake={"media_only": True})


@pytest.mark.parametrize(
    ("name", "media"),
    [
        ("IMG_1.JPG", True),
        ("IMG_1.cr3", True),
        ("P1.RW2", True),
        ("clip.MKV", True),
        ("GX010001.lrv", True),
        ("IMG_1.JPG.xmp", True),
        ("IMG_1.jpg.supplemental-metadata.json", True),
        ("MVI_1.THM", True),
        ("notes.txt", False),
        ("scan.pdf", False),
        ("Thumbs.db", False),
        ("jpg", False),
    ],
)
def test_media_or_sidecar_by_extension(name: str, media: bool) -> None:
    assert is_media_or_sidecar(name) is media
    assert (skip_reason(name, 10, True) is None) is media
    assert skip_reason(name, 10, False) is None
    assert skip_reason(name, 0, False) == EMPTY


def test_non_media_files_are_skipped_and_left_in_place(media_ctx: Context) -> None:
    inbox = media_ctx.roots.inbox
    notes = make_plain(inbox / "trip" / "notes.txt", b"what we did\n")
    pdf = make_plain(inbox / "ticket.pdf", b"%PDF-1.4\n")
    photo = make_jpeg(inbox / "trip" / "IMG_1.jpg", datetime(2024, 5, 1, 9), seed=1)
    sidecar = make_plain(inbox / "trip" / "IMG_1.jpg.xmp", b"<x:xmpmeta/>")
    for path in (notes, pdf):
        row = take(media_ctx, path)
        assert row.status == FileStatus.SKIPPED and row.error == NOT_MEDIA
        assert row.sha256 is None and row.batch is None
        assert path.exists() and row.current_path == str(path)
    assert take(media_ctx, photo).status == FileStatus.UNIQUE
    assert take(media_ctx, sidecar).status == FileStatus.UNIQUE
    made = batches.create_batch(media_ctx)
    assert made is not None and made.file_count == 2
    assert notes.exists() and pdf.exists()
    # Seen again (a rescan, a restart): still one row each, still skipped.
    assert register(media_ctx, notes) is None
    assert File.select().where(File.status == FileStatus.SKIPPED).count() == 2
    assert File.select().count() == 4


def test_with_media_only_off_every_file_flows(make_ctx: Callable[..., Any]) -> None:
    ctx = make_ctx(intake={"media_only": False})
    notes = make_plain(ctx.roots.inbox / "notes.txt", b"what we did\n")
    row = take(ctx, notes)
    assert row.status == FileStatus.UNIQUE and row.sha256 is not None


def test_switching_media_only_off_takes_the_skipped_file(media_ctx: Context) -> None:
    notes = make_plain(media_ctx.roots.inbox / "notes.txt", b"what we did\n")
    first = take(media_ctx, notes)
    assert first.status == FileStatus.SKIPPED
    media_ctx.settings.intake.media_only = False
    again = take(media_ctx, notes)
    assert again.id == first.id and again.status == FileStatus.UNIQUE
    assert again.error is None


def test_empty_file_is_skipped_until_it_has_content(
    make_ctx: Callable[..., Any],
) -> None:
    ctx = make_ctx(intake={"media_only": False})
    path = ctx.roots.inbox / "IMG_2.jpg"
    path.write_bytes(b"")
    row = take(ctx, path)
    assert row.status == FileStatus.SKIPPED and row.error == EMPTY
    assert path.exists()
    make_jpeg(path, datetime(2024, 5, 2, 9), seed=2)  # the copy finally arrived
    os.utime(path, ns=(row.mtime_ns + 10**9, row.mtime_ns + 10**9))
    later = take(ctx, path)
    assert later.id == row.id and later.status == FileStatus.UNIQUE
    assert later.size == path.stat().st_size and later.error is None


def test_file_emptied_after_register_is_skipped(media_ctx: Context) -> None:
    path = make_jpeg(media_ctx.roots.inbox / "IMG_3.jpg", seed=3)
    item = register(media_ctx, path)
    assert item is not None
    path.write_bytes(b"")
    assert hash_stage.hash_item(media_ctx, item) is None
    row = File.get_by_id(item.file_id)
    assert row.status == FileStatus.SKIPPED and row.size == 0 and path.exists()


def test_undecodable_jpeg_is_kept_deduplicated_and_sorted_by_date(
    media_ctx: Context,
) -> None:
    inbox = media_ctx.roots.inbox
    whole = make_jpeg(
        inbox.parent / "whole.jpg", datetime(2021, 7, 14, 18, 30), size=(640, 480)
    )
    data = whole.read_bytes()
    broken = inbox / "IMG_4.jpg"
    broken.write_bytes(data[: len(data) // 2])  # EXIF intact, image data cut off
    assert phash(broken) is None
    row = take(media_ctx, broken)
    assert row.status == FileStatus.UNIQUE and row.phash is None
    assert row.sha256 is not None and row.error is None
    copy = inbox / "again" / "IMG_4.jpg"
    copy.parent.mkdir()
    copy.write_bytes(broken.read_bytes())
    dup = take(media_ctx, copy)
    assert dup.status == FileStatus.DUPLICATE and dup.duplicate_of == row.id
    made = batches.create_batch(media_ctx)
    assert made is not None
    report = sort_batch(media_ctx, made)
    assert report["sorted"] == 1 and report["errors"] == 0
    done = File.get_by_id(row.id)
    target = media_ctx.roots.sorted_dir / "2021" / "07" / "14" / "IMG_4.jpg"
    assert done.status == FileStatus.SORTED and done.current_path == str(target)
    assert done.capture_source == "exif"
    assert target.read_bytes() == data[: len(data) // 2]


def test_text_named_like_a_photo_is_kept_too(media_ctx: Context) -> None:
    path = make_plain(media_ctx.roots.inbox / "text.jpg", b"this is not a photo\n")
    row = take(media_ctx, path)
    assert row.status == FileStatus.UNIQUE and row.phash is None


def test_a_file_that_cannot_be_read_is_an_error(
    media_ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_jpeg(media_ctx.roots.inbox / "IMG_5.jpg", seed=5)

    def unreadable(p: Path) -> Any:
        raise OSError(errno.EIO, "Input/output error", str(p))

    monkeypatch.setattr(hash_stage, "sha256_file", unreadable)
    row = take(media_ctx, path)
    assert row.status == FileStatus.ERROR
    assert row.error is not None and row.error.startswith("hash:")
    assert "Input/output error" in row.error and path.exists()


def test_accepted_file_emptied_in_the_inbox_starts_over_and_is_skipped(
    media_ctx: Context,
) -> None:
    path = make_jpeg(media_ctx.roots.inbox / "IMG_6.jpg", seed=6)
    row = take(media_ctx, path)
    assert row.status == FileStatus.UNIQUE
    path.write_bytes(b"")
    os.utime(path, ns=(row.mtime_ns + 10**9, row.mtime_ns + 10**9))
    again = take(media_ctx, path)
    assert again.id == row.id and again.status == FileStatus.SKIPPED
    assert again.sha256 is None and again.size == 0 and again.error == EMPTY


def test_a_new_file_is_logged_at_debug_a_skip_at_info(media_ctx: Context) -> None:
    from loguru import logger

    records: list[tuple[str, str]] = []
    sink = logger.add(
        lambda m: records.append((m.record["level"].name, m.record["message"])),
        level="DEBUG",
    )
    try:
        photo = media_ctx.roots.inbox / "a.jpg"
        photo.write_bytes(b"jpeg-ish")
        notes = media_ctx.roots.inbox / "notes.txt"
        notes.write_bytes(b"text")
        register(media_ctx, photo)
        register(media_ctx, notes)
    finally:
        logger.remove(sink)
    by_file = {
        name: level
        for level, message in records
        for name in ("a.jpg", "notes.txt")
        if name in message
    }
    assert by_file == {"a.jpg": "DEBUG", "notes.txt": "INFO"}


def test_a_group_is_registered_in_one_write(
    ctx: Context, writer_calls: list[int]
) -> None:
    a = make_plain(ctx.roots.inbox / "a.jpg")
    b = make_plain(ctx.roots.inbox / "sub" / "b.jpg")
    outside = make_plain(ctx.roots.inbox.parent / "outside.jpg")
    link = ctx.roots.inbox / "link.jpg"
    link.symlink_to(outside)
    writer_calls[0] = 0
    items = register_many(ctx, [a, link, b, a, ctx.roots.inbox / "gone.jpg"])
    assert writer_calls == [1]
    assert [i.path if i else None for i in items] == [a, None, b, None, None]
    rows = {r.current_path: r.status for r in File.select()}
    assert rows == {str(a): FileStatus.NEW, str(b): FileStatus.NEW}
    assert register_many(ctx, [a, b]) == items[:1] + items[2:3]  # resumed, same rows


def test_files_below_a_folder_linked_from_outside_are_refused(ctx: Context) -> None:
    elsewhere = ctx.roots.inbox.parent / "elsewhere"
    outside = [make_plain(elsewhere / name) for name in ("x.jpg", "y.jpg")]
    (ctx.roots.inbox / "linked").symlink_to(elsewhere, target_is_directory=True)
    kept = make_plain(ctx.roots.inbox / "real" / "z.jpg")
    linked = [ctx.roots.inbox / "linked" / p.name for p in outside]

    items = register_many(ctx, [linked[0], kept, linked[1]])

    assert [i.path if i else None for i in items] == [None, kept, None]
    assert [r.current_path for r in File.select()] == [str(kept)]
