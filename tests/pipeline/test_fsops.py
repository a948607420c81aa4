"""Safe moves: never overwrite, journal first, and the crash matrix with recovery."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import fsops
from pipeline.db import Writer, open_database
from pipeline.fsops import MoveError, Mover, MoveRequest, durability
from pipeline.models import File, FileStatus, MoveJournal, MoveState, database_proxy

CHILD = Path(__file__).with_name("fsops_child.py")
LINK_STEPS = ["journaled", "linked", "unlinked", "finished"]
COPY_STEPS = [
    "journaled",
    "copying",
    "copied",
    "placed",
    "tmp_removed",
    "unlinked",
    "finished",
]


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    w = Writer(open_database(tmp_path / "db.sqlite"))
    yield w
    w.close()
    database_proxy.initialize(None)


def add_file(writer: Writer, path: Path) -> int:
    return writer.call(
        lambda: File.create(
            original_path=str(path),
            rel_path=path.name,
            current_path=str(path),
            status="HASHED",
        ).id
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(fsops.TEMP_PREFIX)]


@pytest.mark.parametrize("force_copy", [False, True])
def test_move_updates_row_and_journal(
    tmp_path: Path, writer: Writer, force_copy: bool
) -> None:
    src = tmp_path / "in" / "a.jpg"
    src.parent.mkdir()
    src.write_bytes(b"x" * 3000)
    os.utime(src, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    fid = add_file(writer, src)
    dst = Mover(writer, force_copy=force_copy).move(
        MoveRequest(src, tmp_path / "out" / "sub" / "a.jpg", fid, FileStatus.DUPLICATE)
    )
    assert dst == tmp_path / "out" / "sub" / "a.jpg" and not src.exists()
    assert dst.read_bytes() == b"x" * 3000
    assert dst.stat().st_mtime_ns == 1_600_000_000_000_000_000  # dates survive the move
    row = File.get_by_id(fid)
    assert (row.current_path, row.status) == (str(dst), FileStatus.DUPLICATE)
    entry = MoveJournal.get()
    assert entry.state == MoveState.DONE and entry.method == (
        "copy" if force_copy else "link"
    )
    assert partials(tmp_path) == []


@pytest.mark.parametrize("force_copy", [False, True])
def test_clash_gets_a_free_name_and_never_overwrites(
    tmp_path: Path, writer: Writer, force_copy: bool
) -> None:
    (tmp_path / "out").mkdir()
    for name in ("a.jpg", "a_1.jpg"):
        (tmp_path / "out" / name).write_text(f"existing {name}")
    src = tmp_path / "a.jpg"
    src.write_text("new")
    dst = Mover(writer, force_copy=force_copy).move(
        MoveRequest(src, tmp_path / "out" / "a.jpg")
    )
    assert dst.name == "a_2.jpg" and dst.read_text() == "new"
    assert (tmp_path / "out" / "a.jpg").read_text() == "existing a.jpg"
    assert (tmp_path / "out" / "a_1.jpg").read_text() == "existing a_1.jpg"


def test_many_moves_to_one_name_all_survive(tmp_path: Path, writer: Writer) -> None:
    mover = Mover(writer)
    sources = []
    for n in range(12):
        folder = tmp_path / "in" / str(n)
        folder.mkdir(parents=True)
        (folder / "same.jpg").write_text(str(n))
        sources.append(folder / "same.jpg")
    threads = [
        threading.Thread(
            target=mover.move, args=(MoveRequest(s, tmp_path / "out" / "same.jpg"),)
        )
        for s in sources[:6]
    ]
    for t in threads:
        t.start()
    results = mover.move_many(
        [MoveRequest(s, tmp_path / "out" / "same.jpg") for s in sources[6:]]
    )
    for t in threads:
        t.join()
    assert all(r.ok for r in results)
    contents = sorted(p.read_text() for p in (tmp_path / "out").iterdir())
    assert contents == sorted(str(n) for n in range(12))


def test_bad_sources_are_refused_without_side_effects(
    tmp_path: Path, writer: Writer
) -> None:
    target = tmp_path / "outside.txt"
    target.write_text("not ours")
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    mover = Mover(writer)
    results = mover.move_many(
        [
            MoveRequest(link, tmp_path / "out" / "link.jpg"),
            MoveRequest(fifo, tmp_path / "out" / "pipe.jpg"),
            MoveRequest(tmp_path / "missing.jpg", tmp_path / "out" / "m.jpg"),
        ]
    )
    assert [r.ok for r in results] == [False, False, False]
    assert "not a regular file" in (results[0].error or "")
    assert link.is_symlink() and target.read_text() == "not ours"
    assert MoveJournal.select().count() == 0
    with pytest.raises(MoveError):
        mover.move(MoveRequest(tmp_path / "missing.jpg", tmp_path / "out" / "m.jpg"))


def test_copy_that_does_not_verify_is_abandoned(tmp_path: Path, writer: Writer) -> None:
    src = tmp_path / "a.jpg"
    src.write_bytes(b"payload")
    fid = add_file(writer, src)
    result = Mover(writer, force_copy=True).move_many(
        [
            MoveRequest(
                src,
                tmp_path / "out" / "a.jpg",
                fid,
                FileStatus.DUPLICATE,
                sha256="0" * 64,
            )
        ]
    )[0]
    assert not result.ok and "does not verify" in (result.error or "")
    assert src.read_bytes() == b"payload" and not (tmp_path / "out" / "a.jpg").exists()
    assert partials(tmp_path) == []
    assert MoveJournal.get().state == MoveState.ABANDONED
    assert File.get_by_id(fid).current_path == str(src)


@pytest.mark.parametrize("force_copy", [False, True])
def test_a_source_that_cannot_be_removed_is_not_moved(
    tmp_path: Path, writer: Writer, monkeypatch: pytest.MonkeyPatch, force_copy: bool
) -> None:
    # An inbox folder the daemon may read but not write (another user's share): the
    # file can be linked or copied out, never removed. Root ignores modes, so the
    # refusal is injected.
    src = tmp_path / "share" / "a.jpg"
    src.parent.mkdir()
    src.write_bytes(b"payload" * 100)
    fid = add_file(writer, src)
    real_unlink = os.unlink

    def refused(path: object, *args: object, **kwargs: object) -> None:
        if kwargs.get("dir_fd") is not None and path == "a.jpg":
            raise PermissionError(13, "Permission denied", "a.jpg")
        real_unlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", refused)
    dst = tmp_path / "out" / "a.jpg"
    result = Mover(writer, force_copy=force_copy).move_many(
        [MoveRequest(src, dst, fid, FileStatus.UNIQUE, sha(src))]
    )[0]
    monkeypatch.undo()
    assert not result.ok and result.errno == 13
    assert src.read_bytes() == b"payload" * 100
    assert not dst.exists() and partials(tmp_path) == []  # no second copy left
    assert MoveJournal.get().state == MoveState.ABANDONED
    row = File.get_by_id(fid)
    assert (row.status, row.current_path) == (FileStatus.HASHED, str(src))


@pytest.mark.parametrize("known_hash", [True, False])
def test_copy_damaged_on_its_way_to_disk_is_never_placed(
    tmp_path: Path, writer: Writer, known_hash: bool
) -> None:
    """The copy is re-read before it is linked: a write that went wrong is caught.

    The source hash matches what was recorded, so only the re-read of the written
    copy can see that the bytes on disk differ (a bad cable, a faulty disk).
    """
    src = tmp_path / "a.jpg"
    src.write_bytes(b"original bytes " * 1000)
    fid = add_file(writer, src)

    def damage_the_copy(step: str) -> None:
        if step != "copying":
            return
        for tmp in partials(tmp_path / "out"):
            with open(tmp, "r+b") as f:
                f.seek(3)
                f.write(b"X")

    mover = Mover(writer, force_copy=True, checkpoint=damage_the_copy)
    result = mover.move_many(
        [
            MoveRequest(
                src,
                tmp_path / "out" / "a.jpg",
                fid,
                FileStatus.DUPLICATE,
                sha256=sha(src) if known_hash else None,
            )
        ]
    )[0]
    assert not result.ok and "does not verify" in (result.error or "")
    assert src.read_bytes() == b"original bytes " * 1000
    assert not (tmp_path / "out" / "a.jpg").exists()
    assert partials(tmp_path) == []
    assert MoveJournal.get().state == MoveState.ABANDONED
    assert File.get_by_id(fid).current_path == str(src)


def test_link_refused_falls_back_to_copy(
    tmp_path: Path, writer: Writer, monkeypatch
) -> None:
    calls = {"n": 0}
    real_link = os.link

    def no_link(a, b, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(1, "Operation not permitted")
        return real_link(a, b, **kw)

    monkeypatch.setattr(os, "link", no_link)
    src = tmp_path / "a.jpg"
    src.write_text("data")
    dst = Mover(writer).move(MoveRequest(src, tmp_path / "out" / "a.jpg"))
    assert dst.read_text() == "data" and not src.exists()
    assert MoveJournal.get().method == "copy"


def run_child(
    tmp_path: Path, src: Path, dst: Path, step: str, how: str, method: str, fid: int
) -> int:
    proc = subprocess.run(
        [
            sys.executable,
            str(CHILD),
            str(tmp_path / "db.sqlite"),
            str(src),
            str(dst),
            step,
            how,
            method,
            str(fid),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode


MATRIX = [("link", s, h) for s in LINK_STEPS for h in ("exit", "sigkill")] + [
    ("copy", s, h) for s in COPY_STEPS for h in ("exit", "sigkill")
]


@pytest.mark.parametrize(("method", "step", "how"), MATRIX)
def test_crash_matrix(tmp_path: Path, method: str, step: str, how: str) -> None:
    """Kill a child mid-move at each step; after recovery the file exists exactly once."""
    db = open_database(tmp_path / "db.sqlite")
    writer = Writer(db)
    src = tmp_path / "inbox" / "photo.jpg"
    src.parent.mkdir()
    payload = os.urandom(3 * fsops.CHUNK + 123)
    src.write_bytes(payload)
    fid = add_file(writer, src)
    dst = tmp_path / "dups" / "photo.jpg"
    code = run_child(tmp_path, src, dst, step, how, method, fid)
    assert code in (17, -9), f"child did not die at {step}: {code}"

    counts = fsops.recover(writer)
    assert sum(counts.values()) == (0 if step == "finished" else 1)
    copies = [p for p in (src, dst) if p.exists()]
    assert len(copies) == 1, f"after {step}: {copies}"
    assert copies[0].read_bytes() == payload
    assert partials(tmp_path) == []
    assert (
        MoveJournal.select().where(MoveJournal.state == MoveState.PENDING).count() == 0
    )
    row = File.get_by_id(fid)
    assert row.current_path == str(copies[0])
    assert row.status == (FileStatus.DUPLICATE if copies[0] == dst else "HASHED")
    assert fsops.recover(writer) == {"DONE": 0, "ABANDONED": 0, "FAILED": 0}
    writer.close()
    database_proxy.initialize(None)


def test_recovery_when_destination_was_taken_meanwhile(
    tmp_path: Path, writer: Writer
) -> None:
    src = tmp_path / "a.jpg"
    src.write_text("mine")
    dst = tmp_path / "out" / "a.jpg"
    dst.parent.mkdir()
    dst.write_text("someone else's")
    for method in ("link", "copy"):
        writer.call(
            lambda m=method: MoveJournal.create(
                src=str(src),
                dst=str(dst),
                method=m,
                tmp=str(dst.with_name(fsops.TEMP_PREFIX + "x-a.jpg")),
            )
        )
    counts = fsops.recover(writer)
    assert counts["ABANDONED"] == 2
    assert src.read_text() == "mine" and dst.read_text() == "someone else's"


def test_recovery_with_both_sides_gone_marks_error(
    tmp_path: Path, writer: Writer
) -> None:
    fid = add_file(writer, tmp_path / "gone.jpg")
    writer.call(
        lambda: MoveJournal.create(
            src=str(tmp_path / "gone.jpg"),
            dst=str(tmp_path / "x.jpg"),
            method="link",
            file_id=fid,
        )
    )
    assert fsops.recover(writer)["FAILED"] == 1
    assert File.get_by_id(fid).status == FileStatus.ERROR


def test_recovery_places_a_verified_partial_when_source_vanished(
    tmp_path: Path, writer: Writer
) -> None:
    tmp = tmp_path / (fsops.TEMP_PREFIX + "ab-a.jpg")
    tmp.write_text("content")
    digest = sha(tmp)
    writer.call(
        lambda: MoveJournal.create(
            src=str(tmp_path / "a.jpg"),
            dst=str(tmp_path / "a.jpg.out"),
            tmp=str(tmp),
            method="copy",
            sha256=digest,
        )
    )
    assert fsops.recover(writer)["DONE"] == 1
    assert (tmp_path / "a.jpg.out").read_text() == "content" and not tmp.exists()


def test_a_file_appearing_in_a_new_folder_is_never_overwritten(
    tmp_path: Path, writer: Writer
) -> None:
    # The mover skips the name lookups in a folder it has just made; a file put there
    # between planning and linking must still push the move on to the next name.
    src = tmp_path / "in" / "a.jpg"
    src.parent.mkdir()
    src.write_text("moved")
    out = tmp_path / "new" / "day"
    intruder = out / "a.jpg"

    def drop_intruder(step: str) -> None:
        if step == "journaled":
            intruder.write_text("intruder")

    mover = Mover(writer, checkpoint=drop_intruder)
    dst = mover.move(MoveRequest(src, intruder))
    assert dst == out / "a_1.jpg" and dst.read_text() == "moved"
    assert intruder.read_text() == "intruder" and not src.exists()
    assert not mover._reserved  # both the planned and the final name are released
    journal = MoveJournal.get()
    assert journal.state == MoveState.DONE and journal.dst == str(dst)


def test_names_clash_within_one_call_into_a_new_folder(
    tmp_path: Path, writer: Writer
) -> None:
    sources = []
    for n in range(3):
        (tmp_path / "in" / str(n)).mkdir(parents=True)
        sources.append(tmp_path / "in" / str(n) / "x.jpg")
        sources[-1].write_text(str(n))
    results = Mover(writer).move_many(
        [MoveRequest(s, tmp_path / "fresh" / "x.jpg") for s in sources]
    )
    names = [r.dst.name for r in results if r.dst is not None]
    assert names == ["x.jpg", "x_1.jpg", "x_2.jpg"]
    assert [(tmp_path / "fresh" / n).read_text() for n in names] == ["0", "1", "2"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/a/b.jpg", ("/a/b", ".jpg")),
        ("/a/b.tar.gz", ("/a/b.tar", ".gz")),
        ("/a/.hidden", ("/a/.hidden", "")),
        ("/a.d/noext", ("/a.d/noext", "")),
        ("/a/trailing.", ("/a/trailing.", "")),
        ("plain", ("plain", "")),
    ],
)
def test_split_suffix_agrees_with_pathlib(path: str, expected: tuple[str, str]) -> None:
    assert fsops.split_suffix(path) == expected
    assert expected[1] == Path(path).suffix


def test_many_folders_are_made_durable_with_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = durability._SYNCFS
    assert real is not None  # Linux with glibc: the daemon's platform

    def counted(fd: int) -> int:
        calls.append(fd)
        return real(fd)

    fsynced: list[str] = []
    monkeypatch.setattr(durability, "_SYNCFS", counted)
    monkeypatch.setattr(durability, "fsync_dir", lambda p: fsynced.append(str(p)))
    kind = durability.filesystem_type(tmp_path)
    assert kind is not None
    # This disk, whatever it is (ext4 here), counts as one where syncfs is enough.
    monkeypatch.setitem(durability.SYNCFS_FILESYSTEMS, kind, "the test's filesystem")
    device = os.stat(tmp_path).st_dev
    many = {str(tmp_path / f"d{n}"): device for n in range(durability.SYNCFS_FROM)}
    for folder in many:
        os.mkdir(folder)
    durability.sync_folders(many)
    assert len(calls) == 1 and fsynced == []
    few = dict(list(many.items())[:3])
    durability.sync_folders(few)
    assert len(calls) == 1 and fsynced == list(few)


def test_a_failing_syncfs_falls_back_to_an_fsync_per_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsynced: list[str] = []
    monkeypatch.setattr(durability, "_SYNCFS", lambda fd: -1)
    monkeypatch.setattr(durability, "fsync_dir", lambda p: fsynced.append(str(p)))
    device = os.stat(tmp_path).st_dev
    folders = {str(tmp_path / f"d{n}"): device for n in range(durability.SYNCFS_FROM)}
    for folder in folders:
        os.mkdir(folder)
    durability.sync_folders(folders)
    assert fsynced == list(folders)
    fsynced.clear()
    monkeypatch.setattr(durability, "_SYNCFS", None)  # no syncfs in this libc
    durability.sync_folders(folders)
    assert fsynced == list(folders)


def test_syncfs_only_on_filesystems_known_to_flush_directories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(durability, "_SYNCFS", lambda fd: calls.append(fd) or 0)
    fsynced: list[str] = []
    monkeypatch.setattr(durability, "fsync_dir", lambda p: fsynced.append(str(p)))
    device = os.stat(tmp_path).st_dev
    folders = {str(tmp_path / f"d{n}"): device for n in range(durability.SYNCFS_FROM)}
    for folder in folders:
        os.mkdir(folder)
    # As if the folders were on FUSE or NFS: the statfs type is not in the list.
    monkeypatch.setattr(durability, "SYNCFS_FILESYSTEMS", {})
    durability.sync_folders(folders)
    assert calls == [] and fsynced == list(folders)
