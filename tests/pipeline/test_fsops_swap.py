"""An inbox writer swaps things between hashing and the batch move: nothing outside moves.

The attacker controls the inbox. After the daemon hashed `inbox/sub/photo.jpg`, they
replace `sub` with a symlink to a folder of someone else's files (or replace the file
with a hard link to one). A move by path would take the other file into the batch and
delete it from its folder. The mover re-checks at the moment of the move.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from pipeline import batch as batches
from pipeline import fsops
from pipeline.models import File, FileStatus
from tests.pipeline.test_batch import accept

SIZE = 4096


def victim_folder(tmp_path: Path, content: bytes) -> Path:
    outside = tmp_path / "victim"
    outside.mkdir()
    (outside / "photo.jpg").write_bytes(content)
    return outside


@pytest.mark.parametrize("force_copy", [False, True], ids=["link", "copy"])
@pytest.mark.parametrize("same_content", [True, False], ids=["same", "other"])
def test_a_folder_swapped_for_a_symlink_moves_nothing_from_outside(
    service: Any, tmp_path: Path, force_copy: bool, same_content: bool
) -> None:
    svc = service(_service_kwargs={"force_copy": force_copy})
    row = accept(svc, "sub/photo.jpg", SIZE)
    hashed = Path(row.current_path).read_bytes()
    # Same bytes: the SHA-256 check of a copy cannot tell the files apart.
    content = hashed if same_content else b"someone else's".ljust(SIZE, b"!")
    outside = victim_folder(tmp_path, content)
    sub = svc.ctx.roots.inbox / "sub"
    shutil.rmtree(sub)
    sub.symlink_to(outside, target_is_directory=True)

    made = batches.create_batch(svc.ctx)

    assert (outside / "photo.jpg").read_bytes() == content  # still there, untouched
    assert made is None or made.file_count == 0
    batch_dir = svc.ctx.roots.batch_dir
    assert not [p for p in batch_dir.rglob("*") if p.is_file()]
    after = File.get_by_id(row.id)
    assert after.status == FileStatus.ERROR, after.status
    assert "not a real folder" in (after.error or "")


@pytest.mark.parametrize("force_copy", [False, True], ids=["link", "copy"])
def test_a_file_replaced_by_a_link_to_another_is_not_moved(
    service: Any, tmp_path: Path, force_copy: bool
) -> None:
    svc = service(_service_kwargs={"force_copy": force_copy})
    row = accept(svc, "sub/photo.jpg", SIZE)
    outside = victim_folder(tmp_path, b"private".ljust(SIZE // 2, b"."))
    inbox_file = Path(row.current_path)
    inbox_file.unlink()
    os.link(outside / "photo.jpg", inbox_file)  # a hard link to the victim's file

    made = batches.create_batch(svc.ctx)

    assert made is None or made.file_count == 0
    assert (outside / "photo.jpg").read_bytes().startswith(b"private")
    assert os.stat(outside / "photo.jpg").st_nlink == 2  # nothing linked elsewhere
    after = File.get_by_id(row.id)
    assert after.status == FileStatus.ERROR
    assert "not the file that was hashed" in (after.error or "")


def test_open_folder_refuses_a_symlink_anywhere_on_the_path(tmp_path: Path) -> None:
    real = tmp_path / "real" / "deep"
    real.mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    fd = fsops.open_folder(str(real))
    os.close(fd)
    for bad in (str(tmp_path / "link" / "deep"), str(tmp_path / "link")):
        with pytest.raises(fsops.SwappedPath):
            fsops.open_folder(bad)
    with pytest.raises(fsops.SwappedPath):
        fsops.open_folder(str(real / ".." / "deep"))
    with pytest.raises(fsops.SwappedPath):
        fsops.unlink_inside(str(tmp_path / "link" / "deep" / "x"))
