"""Dedup decisions on a real database and real files, without the daemon."""

from __future__ import annotations

import errno
import hashlib
import threading
from pathlib import Path

import pytest

from pipeline import dedup
from pipeline.context import Context
from pipeline.dedup import Decision, decide, dedup_item, dedup_many
from pipeline.fsops import MoveError
from pipeline.intake import Item
from pipeline.models import File, FileStatus


def hashed(ctx: Context, name: str, data: bytes, phash: int | None = None) -> Item:
    """A file in the inbox with its row as the hash stage leaves it (HASHED)."""
    path = ctx.roots.inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    fid = ctx.writer.call(
        lambda: File.create(
            original_path=str(path),
            rel_path=name,
            current_path=str(path),
            size=len(data),
            sha256=digest,
            phash=phash,
            status=FileStatus.HASHED,
        ).id
    )
    return Item(fid, path, digest, phash)


def on_writer(ctx: Context, item: Item) -> Decision | None:
    return ctx.writer.call(lambda: decide(ctx, item))


def status(fid: int) -> str:
    return File.get_by_id(fid).status


def test_first_copy_is_unique_and_joins_the_near_index(ctx: Context) -> None:
    item = hashed(ctx, "a.jpg", b"one", phash=0x0F0F0F0F0F0F0F0F)
    assert on_writer(ctx, item) == Decision(FileStatus.UNIQUE)
    assert status(item.file_id) == FileStatus.UNIQUE
    assert ctx.near_index is not None and len(ctx.near_index) == 1


def test_exact_copy_is_moved_to_duplicates_dir_and_points_at_the_first(
    ctx: Context,
) -> None:
    first = hashed(ctx, "a.jpg", b"same bytes")
    dedup_item(ctx, first)
    copy = hashed(ctx, "sub/b.jpg", b"same bytes")
    assert dedup_item(ctx, copy) is copy
    row = File.get_by_id(copy.file_id)
    assert (row.status, row.duplicate_of) == (FileStatus.DUPLICATE, first.file_id)
    moved = ctx.roots.duplicates_dir / "sub" / "b.jpg"
    assert row.current_path == str(moved) and moved.read_bytes() == b"same bytes"
    assert not copy.path.exists() and first.path.exists()


def test_a_decided_file_is_not_decided_again(ctx: Context) -> None:
    item = hashed(ctx, "a.jpg", b"one")
    assert on_writer(ctx, item) is not None
    assert on_writer(ctx, item) is None
    assert dedup_item(ctx, item) is None
    assert status(item.file_id) == FileStatus.UNIQUE


def test_a_duplicate_decision_leaves_the_row_hashed_until_the_move(
    ctx: Context,
) -> None:
    """A crash between decision and move re-decides the file instead of losing it."""
    first = hashed(ctx, "a.jpg", b"same")
    on_writer(ctx, first)
    copy = hashed(ctx, "b.jpg", b"same")
    decision = on_writer(ctx, copy)
    assert decision == Decision(FileStatus.DUPLICATE, duplicate_of=first.file_id)
    assert status(copy.file_id) == FileStatus.HASHED and copy.path.exists()
    assert on_writer(ctx, copy) == decision


def test_identical_sidecars_are_both_kept(ctx: Context) -> None:
    a = hashed(ctx, "a.jpg.json", b'{"title": "x"}')
    b = hashed(ctx, "b.jpg.json", b'{"title": "x"}')
    assert on_writer(ctx, a) == Decision(FileStatus.UNIQUE)
    assert on_writer(ctx, b) == Decision(FileStatus.UNIQUE)


def test_only_accepted_content_makes_a_duplicate(ctx: Context) -> None:
    """A copy of a file that is itself a duplicate or failed is judged on its own."""
    for name, state in (("d.jpg", FileStatus.DUPLICATE), ("e.jpg", FileStatus.ERROR)):
        other = hashed(ctx, name, b"content")
        ctx.writer.call(
            lambda o=other, s=state: File.update(status=s)
            .where(File.id == o.file_id)
            .execute()
        )
    fresh = hashed(ctx, "f.jpg", b"content")
    assert on_writer(ctx, fresh) == Decision(FileStatus.UNIQUE)


def test_near_duplicate_is_kept_and_flagged_with_its_distance(ctx: Context) -> None:
    first = hashed(ctx, "a.jpg", b"big", phash=0x0FFF0000FFFF0000)
    on_writer(ctx, first)
    near = hashed(ctx, "b.jpg", b"small", phash=0x0FFF0000FFFF0007)
    assert on_writer(ctx, near) == Decision(
        FileStatus.UNIQUE, near_duplicate_of=first.file_id, distance=3
    )
    row = File.get_by_id(near.file_id)
    assert (row.near_duplicate_of, row.near_distance) == (first.file_id, 3)
    far = hashed(ctx, "c.jpg", b"other", phash=0x7000FFFF0000FFFF)
    assert on_writer(ctx, far) == Decision(FileStatus.UNIQUE)


def test_near_duplicate_matching_off_at_distance_zero(make_ctx) -> None:
    ctx = make_ctx(dedup={"near_duplicate_distance": 0})
    on_writer(ctx, hashed(ctx, "a.jpg", b"big", phash=0x0FFF0000FFFF0000))
    near = hashed(ctx, "b.jpg", b"small", phash=0x0FFF0000FFFF0000)
    assert on_writer(ctx, near) == Decision(FileStatus.UNIQUE)


def test_identical_files_decided_at_once_give_exactly_one_unique(
    ctx: Context,
) -> None:
    items = [hashed(ctx, f"copy{i}.jpg", b"the same photo") for i in range(8)]
    threads = [threading.Thread(target=dedup_item, args=(ctx, i)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(status(i.file_id) for i in items)
    assert statuses == [FileStatus.DUPLICATE] * 7 + [FileStatus.UNIQUE]
    kept = [i for i in items if status(i.file_id) == FileStatus.UNIQUE]
    assert kept[0].path.exists()
    assert len(list(ctx.roots.duplicates_dir.iterdir())) == 7


def test_sidecar_rule_is_by_extension(tmp_path: Path, ctx: Context) -> None:
    """A photo never escapes exact matching by a sidecar-like folder name."""
    first = hashed(ctx, "a.json/photo.jpg", b"pic")
    on_writer(ctx, first)
    copy = hashed(ctx, "b.jpg", b"pic")
    assert on_writer(ctx, copy) == Decision(
        FileStatus.DUPLICATE, duplicate_of=first.file_id
    )


def test_a_group_is_decided_in_order_and_a_failed_move_fails_alone(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, writer_calls: list[int]
) -> None:
    plain = [hashed(ctx, f"p{n}.jpg", bytes([n])) for n in range(5)]
    writer_calls[0] = 0
    assert dedup_many(ctx, plain) == plain
    assert writer_calls == [1]  # five decisions, one round trip

    first = hashed(ctx, "a.jpg", b"same")
    copy = hashed(ctx, "b.jpg", b"same")
    other = hashed(ctx, "c.jpg", b"other")
    assert dedup_many(ctx, [first, copy, other, copy]) == [first, copy, other, None]
    assert [status(i.file_id) for i in (first, copy, other)] == [
        FileStatus.UNIQUE,
        FileStatus.DUPLICATE,
        FileStatus.UNIQUE,
    ]
    assert (ctx.roots.duplicates_dir / "b.jpg").read_bytes() == b"same"

    again = hashed(ctx, "d.jpg", b"same")
    late = hashed(ctx, "e.jpg", b"late")

    def refuse(requests: object, on_each: object = None) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(ctx.mover, "move_many", refuse)
    outcomes = dedup_many(ctx, [again, late])
    assert isinstance(outcomes[0], OSError) and outcomes[1] is late
    assert status(late.file_id) == FileStatus.UNIQUE
    assert again.path.exists() and status(again.file_id) == FileStatus.HASHED


def test_images_the_owner_kept_alongside_are_passed_over_for_the_next_nearest(
    ctx: Context,
) -> None:
    base = 0x0FFF0000FFFF0000
    kept = [
        hashed(ctx, f"k{n}.jpg", bytes([n]), phash=base ^ bits)
        for n, bits in enumerate((0b1, 0b11))
    ]
    other = hashed(ctx, "o.jpg", b"o", phash=base ^ 0b111)
    for item in (*kept, other):
        ctx.near_index.add(item.file_id, item.phash)
        ctx.writer.call(
            lambda i=item: File.update(status=FileStatus.UNIQUE)
            .where(File.id == i.file_id)
            .execute()
        )
    again = hashed(ctx, "x.jpg", b"x", phash=base)
    for partner in kept:  # the owner said "keep both" for each of the two closest
        low, high = sorted((again.file_id, partner.file_id))
        ctx.writer.call(
            lambda lo=low, hi=high: File._meta.database.execute_sql(
                "INSERT INTO near_keeps (low, high, at) VALUES (?, ?, '2026-01-01')",
                (lo, hi),
            )
        )
    assert on_writer(ctx, again) == Decision(
        FileStatus.UNIQUE, near_duplicate_of=other.file_id, distance=3
    )


def test_a_duplicate_that_cannot_be_set_aside_fails_alone(
    ctx: Context, monkeypatch: pytest.MonkeyPatch, writer_calls: list[int]
) -> None:
    first = hashed(ctx, "a.jpg", b"same")
    on_writer(ctx, first)
    copies = [hashed(ctx, f"copy{n}.jpg", b"same") for n in range(3)]
    copies[1].path.unlink()  # gone before it could be set aside
    beats: list[None] = []
    monkeypatch.setattr(dedup, "heartbeat", lambda: beats.append(None))
    writer_calls[0] = 0
    outcomes = dedup_many(ctx, copies)
    # Each file moved is timed on its own (a copy may be large) ...
    assert len(beats) == 2
    # ... and the group is decided and journaled in three round trips, not 1 + 2 each.
    assert writer_calls == [3]
    assert outcomes[0] is copies[0] and outcomes[2] is copies[2]
    assert isinstance(outcomes[1], MoveError)
    assert [status(c.file_id) for c in copies] == [
        FileStatus.DUPLICATE,
        FileStatus.HASHED,
        FileStatus.DUPLICATE,
    ]
    assert sorted(p.name for p in ctx.roots.duplicates_dir.iterdir()) == [
        "copy0.jpg",
        "copy2.jpg",
    ]


def test_a_group_is_read_in_two_queries_and_decided_as_one_after_the_other(
    ctx: Context,
) -> None:
    first = hashed(ctx, "a.jpg", b"same")
    copy = hashed(ctx, "b.jpg", b"same")
    sidecars = [hashed(ctx, f"{n}.xmp", b"<x/>") for n in "cd"]
    later = hashed(ctx, "e.jpg", b"later")
    earlier = hashed(ctx, "f.jpg", b"earlier")
    assert on_writer(ctx, earlier) == Decision(FileStatus.UNIQUE)
    again = hashed(ctx, "g.jpg", b"earlier")
    group = [first, copy, *sidecars, later, again, copy]
    reads: list[str] = []

    def decide_traced() -> list[Decision | None]:
        con = File._meta.database.connection()
        con.set_trace_callback(
            lambda sql: reads.append(sql) if sql.startswith("SELECT") else None
        )
        try:
            return dedup.decide_many(ctx, group)
        finally:
            con.set_trace_callback(None)

    decisions = ctx.writer.call(decide_traced)

    unique, dup = Decision(FileStatus.UNIQUE), FileStatus.DUPLICATE
    assert decisions == [
        unique,
        Decision(dup, duplicate_of=first.file_id),  # the first of the group
        unique,
        unique,  # identical sidecars are both kept
        unique,
        Decision(dup, duplicate_of=earlier.file_id),  # accepted before the group
        None,  # the same file twice: decided once
    ]
    assert decisions[1] is not None and decisions[1].rel_path == "b.jpg"
    assert len(reads) == 2  # the rows, and the accepted files with their content
