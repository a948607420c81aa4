"""Sorting by capture date: one fixture per source, companions, clashes, idempotence."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline import batch as batches
from pipeline import sort
from pipeline.models import Batch, BatchStatus, File, FileStatus
from tests.conftest import wait_until
from tests.pipeline import mediafixtures as mf

NY = {"sort": {"timezone": "America/New_York"}}


def tree(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
    )


def ingest(svc: Any, build: Callable[[Path], Any]) -> Batch:
    """Build files in the inbox, let the pipeline accept them, batch them."""
    inbox = svc.ctx.roots.inbox
    build(inbox)
    paths = [p for p in inbox.rglob("*") if p.is_file()]
    for p in paths:
        svc.submit(p)
    wait_until(
        lambda: File.select()
        .where(File.status.in_(("UNIQUE", "DUPLICATE", "ERROR")))
        .count()
        >= len(paths)
    )
    errors = [
        (r.rel_path, r.error) for r in File.select().where(File.status == "ERROR")
    ]
    assert not errors
    made = batches.create_batch(svc.ctx)
    assert made is not None
    return made


def sorted_tree(svc: Any, build: Callable[[Path], Any]) -> list[str]:
    made = ingest(svc, build)
    sort.sort_batch(svc.ctx, made)
    return tree(svc.ctx.roots.sorted_dir)


SOURCES = [
    (
        "exif",
        lambda d: mf.make_jpeg(d / "a.jpg", datetime(2023, 4, 12, 10, 30)),
        "2023/04/12/a.jpg",
    ),
    (
        "exif-offset",
        lambda d: mf.make_jpeg(
            d / "b.jpg", datetime(2023, 4, 12, 23, 30), offset="+09:00", subsec="120"
        ),
        "2023/04/12/b.jpg",
    ),
    (
        "heic",
        lambda d: mf.make_heic(d / "c.heic", datetime(2022, 1, 5, 8, 0)),
        "2022/01/05/c.heic",
    ),
    (
        "raw",
        lambda d: mf.make_tiff_raw(d / "d.dng", datetime(2021, 6, 7, 9, 0)),
        "2021/06/07/d.dng",
    ),
    (
        "mp4-utc-evening",
        lambda d: mf.make_mp4(d / "e.mp4", datetime(2023, 7, 1, 3, 30, tzinfo=UTC)),
        "2023/06/30/e.mp4",
    ),
    (
        "name-img",
        lambda d: mf.make_jpeg(d / "IMG_20230412_103000.jpg"),
        "2023/04/12/IMG_20230412_103000.jpg",
    ),
    (
        "name-plain",
        lambda d: mf.make_plain(d / "20220301_101010.mp4"),
        "2022/03/01/20220301_101010.mp4",
    ),
    (
        "name-pxl",
        lambda d: mf.make_jpeg(d / "PXL_20211224_103000123.jpg"),
        "2021/12/24/PXL_20211224_103000123.jpg",
    ),
    (
        "name-wa",
        lambda d: mf.make_plain(d / "VID-20200229-WA0001.mp4"),
        "2020/02/29/VID-20200229-WA0001.mp4",
    ),
    (
        "name-screenshot",
        lambda d: mf.make_png(d / "Screenshot_2019-11-02-10-30-00.png"),
        "2019/11/02/Screenshot_2019-11-02-10-30-00.png",
    ),
    (
        "mtime",
        lambda d: mf.set_mtime(
            mf.make_plain(d / "clip.mov"), datetime(2020, 2, 3, 12, 0)
        ),
        "2020/02/03/clip.mov",
    ),
    (
        "invalid-exif-falls-through",
        lambda d: mf.make_jpeg(d / "IMG_20180506_070000.jpg", "0000:00:00 00:00:00"),
        "2018/05/06/IMG_20180506_070000.jpg",
    ),
]


@pytest.mark.parametrize(
    ("name", "build", "expected"), SOURCES, ids=[s[0] for s in SOURCES]
)
def test_each_date_source_lands_in_its_folder(
    service: Any, name: str, build: Callable[[Path], Any], expected: str
) -> None:
    svc = service(**NY)
    assert sorted_tree(svc, build) == [expected]
    row = File.get()
    assert row.status == FileStatus.SORTED and row.target_path == str(
        svc.ctx.roots.sorted_dir / expected
    )
    assert row.capture_source and row.capture_time is not None


def test_sidecars_and_live_photo_pairs_stay_together(service: Any) -> None:
    svc = service(**NY)

    def build(d: Path) -> None:
        mf.make_jpeg(d / "IMG_1.jpg", datetime(2023, 5, 1, 12, 0))
        mf.set_mtime(
            mf.make_plain(d / "IMG_1.xmp", b"<xmp/>"), datetime(2024, 1, 1, 12)
        )
        mf.set_mtime(
            mf.make_plain(d / "IMG_2.JPG.xmp", b"<xmp/>"), datetime(2024, 1, 1, 12)
        )
        mf.make_jpeg(d / "IMG_2.JPG", datetime(2023, 5, 2, 9, 0))
        mf.make_jpeg(d / "IMG_3.jpg", datetime(2023, 5, 2, 23, 59))
        mf.make_mov(
            d / "IMG_3.mov", datetime(2023, 5, 3, 4, 0, tzinfo=UTC)
        )  # 00:00 in NY

    assert sorted_tree(svc, build) == [
        "2023/05/01/IMG_1.jpg",
        "2023/05/01/IMG_1.xmp",
        "2023/05/02/IMG_2.JPG",
        "2023/05/02/IMG_2.JPG.xmp",
        "2023/05/02/IMG_3.jpg",
        "2023/05/02/IMG_3.mov",
    ]
    # The two identical sidecars were never de-duplicated against each other.
    assert File.select().where(File.status == FileStatus.DUPLICATE).count() == 0


def test_clashes_rename_or_deduplicate(service: Any) -> None:
    svc = service()
    day = svc.ctx.roots.sorted_dir / "2023" / "04" / "12"
    day.mkdir(parents=True)
    (day / "a.jpg").write_bytes(b"someone else's a.jpg")
    staged = mf.make_jpeg(
        svc.ctx.roots.temp_dir / "b.jpg", datetime(2023, 4, 12, 11, 0), seed=9
    )
    shutil.copy(staged, day / "b.jpg")  # the library already holds this exact photo

    def build(d: Path) -> None:
        mf.make_jpeg(d / "a.jpg", datetime(2023, 4, 12, 10, 0), seed=8)
        shutil.copy(staged, d / "b.jpg")

    after = sorted_tree(svc, build)
    assert after == ["2023/04/12/a.jpg", "2023/04/12/a_1.jpg", "2023/04/12/b.jpg"]
    assert (day / "a.jpg").read_bytes() == b"someone else's a.jpg"
    dup = File.get(File.rel_path == "b.jpg")
    assert dup.status == FileStatus.DUPLICATE
    assert Path(dup.current_path).parent == svc.ctx.roots.duplicates_dir
    assert Batch.get().status == BatchStatus.SORTED


def test_template_kind_and_camera(service: Any) -> None:
    svc = service(sort={"template": "{kind}/{camera}/{year}-{month}"})

    def build(d: Path) -> None:
        mf.make_jpeg(
            d / "p.jpg", datetime(2023, 4, 12), camera=("Canon", "Canon EOS R5")
        )
        mf.make_mp4(d / "v.mp4", datetime(2023, 4, 12, 12, tzinfo=UTC))

    assert sorted_tree(svc, build) == [
        "photos/Canon EOS R5/2023-04/p.jpg",
        "videos/unknown/2023-04/v.mp4",
    ]


def test_dry_run_moves_nothing_and_second_sort_changes_nothing(service: Any) -> None:
    svc = service()
    made = ingest(svc, lambda d: mf.make_jpeg(d / "a.jpg", datetime(2023, 4, 12, 10)))
    before = tree(svc.ctx.roots.batch_dir)
    report = sort.sort_batch(svc.ctx, made, dry_run=True)
    assert report["planned"][0]["target"].endswith("2023/04/12/a.jpg")
    assert (
        tree(svc.ctx.roots.batch_dir) == before and tree(svc.ctx.roots.sorted_dir) == []
    )
    assert File.get().status == FileStatus.BATCHED

    class Handle:
        def set_total(self, n: int) -> None: ...

        def advance(self, done: int = 1, errors: int = 0) -> None: ...

    first = sort.sort_job(svc.ctx, Handle())  # type: ignore[arg-type]
    assert first["batches"][0]["sorted"] == 1
    library = tree(svc.ctx.roots.sorted_dir)
    second = sort.sort_job(svc.ctx, Handle())  # type: ignore[arg-type]
    assert second["batches"] == [] and tree(svc.ctx.roots.sorted_dir) == library
    assert sort.sort_counts() == {"sorted": 1, "pending": 0, "errors": 0}


def test_a_crash_between_the_last_move_and_the_batch_update_is_finished(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by tests/integration/test_chaos.py: such a batch stayed SYNCED for good."""
    svc = service()
    made = ingest(svc, lambda d: mf.make_jpeg(d / "a.jpg", datetime(2023, 4, 12, 10)))

    def killed(batch_id: int) -> None:
        raise RuntimeError("killed before the batch was updated")

    with monkeypatch.context() as patch:
        patch.setattr(sort, "_finish_batch", killed)
        with pytest.raises(RuntimeError):
            sort.sort_batch(svc.ctx, made)
    assert File.get().status == FileStatus.SORTED
    assert Batch.get_by_id(made.id).status == BatchStatus.CREATED
    # Restarted: nothing is left to move, but the batch is ready to be finished.
    (ready,) = sort.sortable_batches(svc.ctx)
    assert ready.id == made.id
    sort.sort_batch(svc.ctx, ready)
    assert Batch.get_by_id(made.id).status == BatchStatus.SORTED
    assert sort.sortable_batches(svc.ctx) == []
