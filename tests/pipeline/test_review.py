"""Near-duplicate review: flat images, groups, keep (for good) and set aside as duplicate."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline import batch as batches
from pipeline import review
from pipeline.db import migrate
from pipeline.dedup import decide
from pipeline.hashing import phash, to_signed64
from pipeline.intake import Item
from pipeline.models import File, FileStatus, MoveJournal, MoveState, database_proxy
from pipeline.nearindex import informative
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import pattern

FLAT = to_signed64(0x8000000000000000)


def photo(
    path: Path, seed: int, size: tuple[int, int] = (640, 480), q: int = 92
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern((64, 48), seed).resize(size, Image.Resampling.BICUBIC).save(
        path, "JPEG", quality=q
    )
    return path


def take(svc: Any, path: Path) -> File:
    """Hand a file to the intake stages and wait until it is decided."""
    svc.submit(path)
    return wait_until(
        lambda: File.get_or_none(
            File.original_path == str(path),
            File.status.not_in((FileStatus.NEW, FileStatus.HASHED)),
        ),
        timeout=15,
    )


def test_flat_images_are_never_near_duplicates_of_each_other(service: Any) -> None:
    svc = service()
    inbox = svc.ctx.roots.inbox
    red = inbox / "red.png"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(red, "PNG")
    grey = inbox / "grey.jpg"
    Image.new("RGB", (4032, 2012), (128, 128, 128)).save(grey, "JPEG", quality=90)
    # The report: both hash to 8000000000000000, distance 0.
    assert phash(red) == phash(grey) == FLAT
    assert not informative(FLAT)
    first = take(svc, red)
    second = take(svc, grey)
    assert first.status == second.status == FileStatus.UNIQUE
    assert second.near_duplicate_of is None and first.near_duplicate_of is None
    # Images with detail are still matched.
    photo(inbox / "big.jpg", 11, (1024, 768), 95)
    big = take(svc, inbox / "big.jpg")
    small = take(svc, photo(inbox / "small.jpg", 11, (400, 300), 60))
    assert informative(big.phash) and small.near_duplicate_of == big.id


def test_informative_counts_set_bits() -> None:
    assert not informative(0) and not informative(0x7F)
    assert informative(0xFF) and informative(0xF0F0F0F0F0F0F0F0)
    assert not informative(-1)  # all 64 bits set says as little as none


def near_pair(svc: Any, tmp_seed: int = 11) -> tuple[File, File]:
    inbox = svc.ctx.roots.inbox
    big = take(svc, photo(inbox / f"big{tmp_seed}.jpg", tmp_seed, (1024, 768), 95))
    small = take(svc, photo(inbox / f"small{tmp_seed}.jpg", tmp_seed, (400, 300), 60))
    assert small.near_duplicate_of == big.id
    return big, small


def test_groups_are_disjoint_and_paginated(service: Any) -> None:
    svc = service()
    inbox = svc.ctx.roots.inbox
    bases = []
    for seed in (21, 22, 23):
        big, small = near_pair(svc, seed)
        bases.append(big.id)
    # A third copy of the first image joins the first group (the flagged copy is not
    # in the index), so no image is in two groups.
    third = take(svc, photo(inbox / "third.jpg", 21, (800, 600), 70))
    assert third.near_duplicate_of == bases[0]
    indexed = {i for i, _ in svc.ctx.near_index.within(third.phash, 64, 1000)}
    assert bases[0] in indexed and third.id not in indexed

    groups, after = review.near_groups(2)
    assert [g.file_id for g in groups] == bases[:2] and after == bases[1]
    assert [m.rel_path for m in groups[0].members] == ["small21.jpg", "third.jpg"]
    rest, after = review.near_groups(2, after)
    assert [g.file_id for g in rest] == bases[2:] and after is None
    assert review.near_groups(2, bases[2]) == ([], None)
    plan = database_proxy.execute_sql(
        "EXPLAIN QUERY PLAN SELECT DISTINCT near_duplicate_of FROM files"
        " WHERE near_duplicate_of > 0 ORDER BY near_duplicate_of LIMIT 3"
    ).fetchall()
    assert "files_near_duplicate_of" in str(plan)


def test_keep_clears_the_flag_for_good(service: Any) -> None:
    svc = service()
    big, small = near_pair(svc)
    kept = review.keep(svc.ctx, small.id)
    assert kept.near_duplicate_of is None and kept.status == FileStatus.UNIQUE
    assert Path(kept.current_path).exists()
    pair = database_proxy.execute_sql("SELECT low, high FROM near_keeps").fetchall()
    assert pair == [(big.id, small.id)]
    with pytest.raises(review.ReviewError) as again:
        review.keep(svc.ctx, small.id)
    assert again.value.code == 409
    with pytest.raises(review.ReviewError) as missing:
        review.keep(svc.ctx, 99999)
    assert missing.value.code == 404

    # Decided again (e.g. after a retry), the kept pair is not flagged again ...
    svc.ctx.near_index.remove(small.id)
    for status in (FileStatus.NEW, FileStatus.HASHED):  # legal steps only
        svc.ctx.writer.call(
            lambda s=status: File.update(status=s).where(File.id == small.id).execute()
        )
    item = Item(small.id, Path(small.current_path), small.sha256, small.phash)
    decision = svc.ctx.writer.call(lambda: decide(svc.ctx, item))
    assert decision.near_duplicate_of is None
    # ... while another copy of the same picture still is.
    other = take(svc, photo(svc.ctx.roots.inbox / "other.jpg", 11, (500, 375), 70))
    assert other.near_duplicate_of == big.id


@pytest.mark.parametrize("where", ["inbox", "sorted_dir"])
def test_duplicate_moves_the_file_from_where_it_is_now(
    service: Any, where: str
) -> None:
    svc = service()
    big, small = near_pair(svc)
    if where == "sorted_dir":
        # As if the flagged file had gone through batch, Syncthing and sort already.
        target = svc.ctx.roots.sorted_dir / "2024" / "05" / "01" / "small11.jpg"
        target.parent.mkdir(parents=True)
        Path(small.current_path).rename(target)
        for status in (FileStatus.BATCHED, FileStatus.SORTED):  # legal steps only
            svc.ctx.writer.call(
                lambda s=status: File.update(status=s, current_path=str(target))
                .where(File.id == small.id)
                .execute()
            )
        small = File.get_by_id(small.id)
    content = Path(small.current_path).read_bytes()

    moved = review.mark_duplicate(svc.ctx, small.id)
    assert moved.status == FileStatus.DUPLICATE and moved.duplicate_of == big.id
    assert moved.near_duplicate_of is None
    dst = Path(moved.current_path)
    assert dst == svc.ctx.roots.duplicates_dir / "small11.jpg"
    assert dst.read_bytes() == content and not Path(small.current_path).exists()
    journal = MoveJournal.get(MoveJournal.file_id == small.id)
    assert journal.state == MoveState.DONE and journal.dst == str(dst)
    assert review.near_groups(10) == ([], None)
    with pytest.raises(review.ReviewError) as again:
        review.mark_duplicate(svc.ctx, small.id)
    assert again.value.code == 409


def test_duplicate_that_cannot_move_changes_nothing(service: Any) -> None:
    svc = service()
    big, small = near_pair(svc)
    Path(small.current_path).unlink()  # gone from disk behind the daemon's back
    with pytest.raises(review.ReviewError) as failed:
        review.mark_duplicate(svc.ctx, small.id)
    assert failed.value.code == 409 and "could not be moved" in str(failed.value)
    row = File.get_by_id(small.id)
    assert row.status == FileStatus.UNIQUE and row.duplicate_of is None
    assert row.near_duplicate_of == big.id  # still waiting for review
    assert not any(svc.ctx.roots.duplicates_dir.rglob("*.jpg"))


def test_duplicate_refuses_a_file_outside_the_folders(
    service: Any, tmp_path: Path
) -> None:
    svc = service()
    big, small = near_pair(svc)
    outside = tmp_path / "outside.jpg"
    Path(small.current_path).rename(outside)
    svc.ctx.writer.call(
        lambda: File.update(current_path=str(outside))
        .where(File.id == small.id)
        .execute()
    )
    with pytest.raises(review.ReviewError) as refused:
        review.mark_duplicate(svc.ctx, small.id)
    assert refused.value.code == 409 and outside.exists()
    assert File.get_by_id(small.id).status == FileStatus.UNIQUE


def test_duplicate_waits_for_a_batch_being_built(service: Any) -> None:
    # create_batch claims files, then moves them in, holding the batch lock: a file
    # set aside in between would be listed by a batch it is not in.
    svc = service()
    big, small = near_pair(svc)
    outcome: list[Any] = []

    def resolve() -> None:
        try:
            outcome.append(review.mark_duplicate(svc.ctx, small.id))
        except review.ReviewError as exc:
            outcome.append(exc)

    with svc.ctx.shared.batch_lock:
        worker = threading.Thread(target=resolve)
        worker.start()
        worker.join(0.5)  # the click lands while the batch is being built
        made = svc.ctx.writer.call(lambda: batches._claim([big, small]))
        made = batches._build(svc.ctx, made)
    worker.join(30)
    assert made is not None and made.file_count == 2
    assert isinstance(outcome[0], review.ReviewError) and outcome[0].code == 409
    row = File.get_by_id(small.id)
    assert row.status == FileStatus.BATCHED and Path(row.current_path).exists()
    assert not any(svc.ctx.roots.duplicates_dir.rglob("*.jpg"))


def test_duplicate_refuses_a_file_a_crashed_batch_claimed(service: Any) -> None:
    # Killed between the claim and the moves: the batch is BUILDING and owns the file
    # until the next batch run finishes it.
    svc = service()
    big, small = near_pair(svc)
    claimed = svc.ctx.writer.call(lambda: batches._claim([small]))
    with pytest.raises(review.ReviewError) as refused:
        review.mark_duplicate(svc.ctx, small.id)
    assert refused.value.code == 409
    done = batches.resume_building(svc.ctx)
    assert [b.id for b in done] == [claimed.id] and done[0].file_count == 1
    assert File.get_by_id(small.id).status == FileStatus.BATCHED


def test_migration_8_flattens_old_chains(service: Any) -> None:
    svc = service()
    a = svc.ctx.writer.call(
        lambda: File.create(
            original_path="a", rel_path="a", current_path="a", phash=0xFF
        )
    )
    b = svc.ctx.writer.call(
        lambda: File.create(
            original_path="b",
            rel_path="b",
            current_path="b",
            phash=0x1FF,
            near_duplicate_of=a.id,
            near_distance=1,
        )
    )
    c = svc.ctx.writer.call(
        lambda: File.create(
            original_path="c",
            rel_path="c",
            current_path="c",
            phash=0x3FF,
            near_duplicate_of=b.id,
            near_distance=1,
        )
    )
    db = database_proxy.obj

    def rerun() -> None:
        db.execute_sql("DELETE FROM schema_version WHERE version >= 8")
        migrate(db)

    svc.ctx.writer.call(rerun)
    again = File.get_by_id(c.id)
    assert again.near_duplicate_of == a.id and again.near_distance == 2
