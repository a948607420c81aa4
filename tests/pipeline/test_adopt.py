"""Adoption records a library in place; later arrivals de-duplicate against it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline import adopt
from pipeline.models import (
    File,
    FileSource,
    FileStatus,
    Job,
    JobStatus,
    LibraryRoot,
    RootKind,
    RootState,
    utcnow,
)
from pipeline.scan import scan_inbox
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import make_jpeg, pattern

ORIGINALS = 400
OTHERS = 50
COPIES = 50


def photo(
    path: Path, seed: int, size: tuple[int, int] = (160, 120), q: int = 90
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern((64, 48), seed).resize(size, Image.Resampling.BICUBIC).save(
        path, "JPEG", quality=q
    )
    return path


def build_tree(root: Path, outside: Path) -> dict[str, Any]:
    """500 regular files in sub-folders, duplicates inside, and things to skip."""
    originals = []
    for n in range(ORIGINALS):
        path = root / f"{2010 + n % 10}" / f"{n % 12 + 1:02d}" / f"IMG_{n:04d}.jpg"
        if n % 4 == 0:
            make_jpeg(path, datetime(2015, 6, n % 28 + 1, 12, 0), seed=n, size=(96, 72))
        else:
            photo(path, n)
        originals.append(path)
    for n in range(OTHERS):
        other = root / "docs" / f"note_{n:03d}.txt"
        other.parent.mkdir(parents=True, exist_ok=True)
        other.write_bytes(os.urandom(200 + n))
    copies = {}
    for n in range(COPIES):
        copy = root / "zz_copies" / f"copy_{n:03d}.jpg"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(originals[n * 7], copy)
        copies[str(copy)] = str(originals[n * 7])
    outside.mkdir(parents=True, exist_ok=True)
    secret = photo(outside / "secret.jpg", 9999)
    (root / "2010" / "link.jpg").symlink_to(secret)
    (root / "2010" / "linkdir").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "2010" / "pipe.jpg")
    (root / "2011" / ".hidden.jpg").write_bytes(secret.read_bytes())
    (root / "2011" / "upload.jpg.part").write_bytes(b"partial")
    (root / "2011" / "empty.jpg").write_bytes(b"")
    return {"originals": originals, "copies": copies}


def snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """relative path -> (sha256, size, mtime_ns) of every regular file, no symlinks."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            st = os.lstat(path)
            if path.is_symlink() or not path.is_file():
                continue
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (digest, st.st_size, st.st_mtime_ns)
    return out


def run_adopt(svc: Any, *paths: str | None) -> Job:
    job = svc.jobs.run_inline(
        "adopt",
        lambda h: adopt.adopt_job(svc.ctx, h, list(paths)),
        {"paths": list(paths)},
    )
    assert job.status == JobStatus.DONE, job.message
    return job


def run_scan(svc: Any) -> None:
    job = svc.jobs.run_inline("dedup", lambda h: scan_inbox(svc.ctx, h))
    assert job.status == JobStatus.DONE, job.message


def result(job: Job) -> dict[str, Any]:
    import json

    return json.loads(Job.get_by_id(job.id).result)


def test_adopt_a_tree_in_place_then_dedup_against_it(
    service: Any, tmp_path: Path
) -> None:
    svc = service()
    library = svc.ctx.roots.sorted_dir
    tree = build_tree(library, tmp_path / "outside")
    before = snapshot(library)
    assert (
        len(before) == ORIGINALS + OTHERS + COPIES + 3
    )  # .hidden, .part, empty: skipped

    job = run_adopt(svc, None)  # default: sorted_dir

    rows = list(File.select().order_by(File.id))
    assert len(rows) == ORIGINALS + OTHERS + COPIES
    assert {r.source for r in rows} == {FileSource.ADOPTED}
    assert all(r.batch is None for r in rows)
    assert all(r.current_path == r.original_path for r in rows)
    paths = {r.current_path for r in rows}
    assert not any(
        p.endswith(("link.jpg", "pipe.jpg", ".part", "empty.jpg")) for p in paths
    )
    assert not any("/." in p or "linkdir" in p for p in paths)
    by_path = {r.current_path: r for r in rows}
    counts = Counter(r.status for r in rows)
    assert counts == {
        FileStatus.SORTED: ORIGINALS + OTHERS,
        FileStatus.DUPLICATE: COPIES,
    }
    for copy, original in tree["copies"].items():
        row = by_path[copy]
        assert row.status == FileStatus.DUPLICATE
        assert row.duplicate_of == by_path[original].id
    dated = by_path[str(tree["originals"][4])]
    assert dated.capture_source == "exif"
    assert dated.capture_time == datetime(2015, 6, 5, 12, 0)
    assert by_path[str(tree["originals"][1])].capture_source == "mtime"
    assert all(r.sha256 and r.size for r in rows)
    assert all(r.phash is not None for r in rows if r.current_path.endswith(".jpg"))

    report = result(job)["roots"][0]
    assert report["kind"] == RootKind.LIBRARY
    assert report["recorded"] == ORIGINALS + OTHERS + COPIES
    assert report["duplicate_count"] == COPIES
    assert {d["path"] for d in report["duplicates"]} == set(tree["copies"])
    assert report["skipped"] == {"empty": 1}
    root = LibraryRoot.get(LibraryRoot.path == str(library))
    assert (root.state, root.files, root.duplicates) == (
        RootState.ADOPTED,
        ORIGINALS + OTHERS + COPIES,
        COPIES,
    )
    assert snapshot(library) == before  # nothing moved, renamed or written

    # A restart builds the near-duplicate index from the database, adopted rows too.
    svc.stop()
    svc = service()
    inbox = svc.ctx.roots.inbox
    exact = [tree["originals"][n] for n in (10, 20, 30)]
    for n, original in enumerate(exact):
        shutil.copy2(original, inbox / f"dump_exact_{n}.jpg")
    resized_from = [tree["originals"][n] for n in (11, 21, 31)]  # no EXIF: photo()
    for n, original in enumerate(resized_from):
        seed = int(original.stem.split("_")[1])
        photo(inbox / f"dump_small_{n}.jpg", seed, size=(400, 300), q=60)
    photo(inbox / "dump_new.jpg", 123456)
    run_scan(svc)

    by_path = {r.current_path: r for r in File.select()}
    for n, original in enumerate(exact):
        row = File.get(File.rel_path == f"dump_exact_{n}.jpg")
        assert row.status == FileStatus.DUPLICATE
        assert row.duplicate_of == by_path[str(original)].id
        assert Path(row.current_path).parent == svc.ctx.roots.duplicates_dir
    for n, original in enumerate(resized_from):
        row = File.get(File.rel_path == f"dump_small_{n}.jpg")
        assert row.status == FileStatus.UNIQUE
        assert row.near_duplicate_of == by_path[str(original)].id
    new = File.get(File.rel_path == "dump_new.jpg")
    assert new.status == FileStatus.UNIQUE and new.near_duplicate_of is None
    after = snapshot(library)
    assert after == before
    assert Counter(v[0] for v in after.values()) == Counter(
        v[0] for v in before.values()
    )


def test_rerun_adopts_only_new_or_changed_files(service: Any) -> None:
    svc = service()
    library = svc.ctx.roots.sorted_dir
    for n in range(6):
        photo(library / "a" / f"p{n}.jpg", n)
    run_adopt(svc, str(library))
    first = {r.current_path: (r.id, r.sha256) for r in File.select()}

    again = result(run_adopt(svc, str(library)))["roots"][0]
    assert (again["recorded"], again["updated"], again["unchanged"]) == (0, 0, 6)

    changed = library / "a" / "p0.jpg"
    photo(changed, 77)
    os.utime(changed, ns=(1, 1_600_000_000_000_000_000))
    photo(library / "b" / "new.jpg", 88)
    third = result(run_adopt(svc, str(library)))["roots"][0]
    assert (third["recorded"], third["updated"], third["unchanged"]) == (1, 1, 5)
    # p1 changed into a copy of p2, then that copy changed again into new content.
    shutil.copy2(library / "a" / "p2.jpg", library / "a" / "p1.jpg")
    fourth = result(run_adopt(svc, str(library)))["roots"][0]
    assert fourth["duplicates"][0]["path"] == str(library / "a" / "p1.jpg")
    assert File.get(File.rel_path == "a/p1.jpg").status == FileStatus.DUPLICATE
    photo(library / "a" / "p1.jpg", 99)
    result(run_adopt(svc, str(library)))
    assert File.get(File.rel_path == "a/p1.jpg").status == FileStatus.SORTED
    assert File.select().count() == 7
    row = File.get(File.current_path == str(changed))
    assert row.id == first[str(changed)][0]  # the same row, updated in place
    assert row.sha256 == hashlib.sha256(changed.read_bytes()).hexdigest()
    assert row.sha256 != first[str(changed)][1]
    assert len({r.current_path for r in File.select()}) == 7


def test_live_adoption_feeds_the_running_near_index(service: Any) -> None:
    svc = service()
    photo(svc.ctx.roots.sorted_dir / "x" / "orig.jpg", 5, size=(640, 480))
    run_adopt(svc, None)
    photo(svc.ctx.roots.inbox / "copy.jpg", 5, size=(300, 225), q=55)
    run_scan(svc)
    orig = File.get(File.rel_path == "x/orig.jpg")
    copy = File.get(File.rel_path == "copy.jpg")
    assert copy.status == FileStatus.UNIQUE and copy.near_duplicate_of == orig.id


def test_outside_folder_becomes_a_read_only_reference_root(
    service: Any, tmp_path: Path
) -> None:
    svc = service()
    old = tmp_path / "old_photos"
    photo(old / "one.jpg", 1)
    photo(old / "sub" / "two.jpg", 2)
    before = snapshot(old)
    job = run_adopt(svc, str(old))
    assert result(job)["roots"][0]["kind"] == RootKind.REFERENCE
    root = LibraryRoot.get(LibraryRoot.path == str(old))
    assert root.kind == RootKind.REFERENCE
    assert adopt.reference_roots() == [str(old)]
    assert adopt.is_read_only(old / "sub" / "two.jpg")
    assert not adopt.is_read_only(svc.ctx.roots.sorted_dir / "x.jpg")
    assert File.select().where(File.source == FileSource.ADOPTED).count() == 2
    assert snapshot(old) == before


def test_refused_paths(service: Any, tmp_path: Path) -> None:
    svc = service()
    roots = svc.ctx.roots
    (roots.inbox / "sub").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "file.jpg").write_bytes(b"x")
    refused = {
        "relative/path": "absolute",
        str(roots.inbox / "sub"): "inside paths.inbox",
        str(roots.duplicates_dir): "inside paths.duplicates_dir",
        str(tmp_path): "contains paths.",
        str(tmp_path / "nope"): "not an existing folder",
        str(tmp_path / "file.jpg"): "not an existing folder",
        str(tmp_path / "alias"): "symlink",
        "/etc": "system folder",
        "/": "system folder",
    }
    for path, why in refused.items():
        with pytest.raises(adopt.AdoptRefused, match=why):
            adopt.resolve_target(roots, path)
    assert adopt.resolve_target(roots, None).kind == RootKind.LIBRARY
    sub = roots.sorted_dir / "2020"
    sub.mkdir()
    assert adopt.resolve_target(roots, str(sub)) == adopt.Target(sub, RootKind.LIBRARY)
    assert File.select().count() == 0


def test_unreadable_file_is_reported_and_taken_on_the_next_run(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service()
    library = svc.ctx.roots.sorted_dir
    photo(library / "ok.jpg", 1)
    bad = photo(library / "bad.jpg", 2)
    real_hash = adopt.hash_file

    def failing(ctx: Any, path: Path) -> Any:
        # EIO from a failing disk: the real thing cannot be made on demand.
        if path == bad:
            raise OSError(errno.EIO, "Input/output error")
        return real_hash(ctx, path)

    monkeypatch.setattr(adopt, "hash_file", failing)
    job = run_adopt(svc, None)
    report = result(job)["roots"][0]
    assert report["problems"] == [
        {"path": str(bad), "problem": "cannot read: Input/output error"}
    ]
    assert Job.get_by_id(job.id).errors == 1
    assert File.select().count() == 1
    monkeypatch.setattr(adopt, "hash_file", real_hash)
    again = result(run_adopt(svc, None))["roots"][0]
    assert (again["recorded"], again["unchanged"]) == (1, 1)


def test_interrupted_roots_are_listed_for_resume(service: Any) -> None:
    svc = service()
    photo(svc.ctx.roots.sorted_dir / "a.jpg", 1)
    target = adopt.resolve_target(svc.ctx.roots, None)
    svc.ctx.writer.call(lambda: adopt._begin(target))
    assert adopt.interrupted() == [str(svc.ctx.roots.sorted_dir)]
    run_adopt(svc, None)
    assert adopt.interrupted() == []


def test_an_interrupted_adoption_resumes_at_start(service: Any) -> None:
    svc = service()
    library = svc.ctx.roots.sorted_dir
    for n in range(5):
        photo(library / f"p{n}.jpg", n)
    target = adopt.resolve_target(svc.ctx.roots, None)
    svc.ctx.writer.call(lambda: adopt._begin(target))  # as a crash leaves it
    svc.stop()
    svc = service()
    wait_until(
        lambda: LibraryRoot.get(LibraryRoot.path == str(library)).state
        == RootState.ADOPTED,
        timeout=20,
    )
    assert File.select().where(File.source == FileSource.ADOPTED).count() == 5
    job = Job.get(Job.kind == "adopt")
    assert json.loads(job.params)["resumed"] is True


def test_cleanup_never_touches_a_reference_root(service: Any, tmp_path: Path) -> None:
    from pipeline.cleanup import run_cleanup

    svc = service(
        cleanup={"min_folder_age_seconds": 0, "temp_max_age_hours": 0},
    )
    old = tmp_path / "old_photos"
    photo(old / "a.jpg", 1)
    (old / "empty" / "nested").mkdir(parents=True)
    (old / ".mp-partial-deadbeef-a.jpg").write_bytes(b"looks like ours")
    ancient = 1_000_000_000_000_000_000  # 2001
    for path in (old / ".mp-partial-deadbeef-a.jpg", old / "a.jpg"):
        os.utime(path, ns=(ancient, ancient))
    run_adopt(svc, str(old))
    before = sorted(str(p) for p in old.rglob("*"))
    actions = run_cleanup(svc.ctx, now=utcnow() + timedelta(days=3650))
    assert not [a for a in actions if str(old) in str(a.path)]
    assert sorted(str(p) for p in old.rglob("*")) == before
