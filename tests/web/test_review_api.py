"""GET /api/files/{id}/thumbnail, GET /api/duplicates, POST /api/duplicates/{id}/resolve."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from pipeline.fsops import TEMP_PREFIX
from pipeline.models import File, FileStatus, LibraryRoot, database_proxy
from tests.conftest import add_file
from tests.pipeline.mediafixtures import make_heic
from tests.pipeline.test_review import near_pair, photo
from tests.web.test_api import is_error, serve


@pytest.fixture
def api(service: Any) -> Iterator[tuple[Any, httpx.Client]]:
    svc = service()
    with serve(svc) as client:
        yield svc, client


def on_disk(svc: Any, name: str, make: Any) -> int:
    path = svc.ctx.roots.inbox / name
    make(path)
    return add_file(svc, name, FileStatus.UNIQUE, size=path.stat().st_size)


def rotated_jpeg(path: Path) -> None:
    """1200x800 pixels stored, EXIF orientation 6: shown as 800 wide, 1200 high."""
    img = Image.new("RGB", (1200, 800), (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, 600, 800))  # left half blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, "JPEG", exif=exif.tobytes(), quality=90)


def jpeg_of(answer: httpx.Response) -> Image.Image:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"
    img = Image.open(io.BytesIO(answer.content))
    assert img.format == "JPEG"
    return img


def test_thumbnail_is_an_upright_small_jpeg_cached_in_temp_dir(api: Any) -> None:
    svc, client = api
    file_id = on_disk(svc, "tall.jpg", rotated_jpeg)
    img = jpeg_of(client.get(f"/api/files/{file_id}/thumbnail"))
    assert img.size == (213, 320)  # orientation applied, longest side 320
    # Rotated 90° clockwise: the stored left (blue) half is now on top.
    top, bottom = img.getpixel((106, 20)), img.getpixel((106, 300))
    assert top[2] > 150 > top[0] and bottom[0] > 150 > bottom[2]

    cached = [
        p for p in svc.ctx.roots.temp_dir.iterdir() if p.name.startswith(TEMP_PREFIX)
    ]
    assert len(cached) == 1 and cached[0].name.startswith(f"{TEMP_PREFIX}thumb-")
    # The cached copy is what the second request gets.
    os.utime(cached[0], (1, 1))
    again = client.get(f"/api/files/{file_id}/thumbnail")
    assert again.content == cached[0].read_bytes()
    assert cached[0].stat().st_mtime == 1


def test_thumbnail_of_heic_and_png(api: Any) -> None:
    svc, client = api
    heic = on_disk(svc, "phone.heic", lambda p: make_heic(p, size=(640, 480), seed=3))
    assert jpeg_of(client.get(f"/api/files/{heic}/thumbnail")).size == (320, 240)
    png = on_disk(
        svc, "tiny.png", lambda p: Image.new("RGB", (64, 64), (255, 0, 0)).save(p)
    )
    assert jpeg_of(client.get(f"/api/files/{png}/thumbnail")).size == (64, 64)


def test_thumbnail_is_404_for_what_is_not_a_previewable_image(
    api: Any, tmp_path: Path
) -> None:
    svc, client = api
    text = on_disk(svc, "notes.txt", lambda p: p.write_text("hello"))
    broken = on_disk(svc, "broken.jpg", lambda p: p.write_bytes(b"\xff\xd8 not jpeg"))
    outside = tmp_path / "secret.jpg"
    photo(outside, 5)
    link = svc.ctx.roots.inbox / "link.jpg"
    link.symlink_to(outside)
    linked = add_file(svc, "link.jpg", FileStatus.UNIQUE)
    elsewhere = svc.ctx.writer.call(
        lambda: File.create(
            original_path=str(outside),
            rel_path="secret.jpg",
            current_path=str(outside),
            status=FileStatus.UNIQUE,
        ).id
    )
    for file_id in (text, broken, linked, elsewhere, 999999):
        is_error(client.get(f"/api/files/{file_id}/thumbnail"), 404, "NOT_FOUND")
    is_error(client.get("/api/files/abc/thumbnail"), 404, "NOT_FOUND")
    assert not any(svc.ctx.roots.temp_dir.iterdir())
    # A folder adopted in place may be previewed (read, never written).
    svc.ctx.writer.call(
        lambda: LibraryRoot.create(path=str(tmp_path), kind="reference")
    )
    jpeg_of(client.get(f"/api/files/{elsewhere}/thumbnail"))


def test_duplicates_are_paginated_groups_with_members(api: Any) -> None:
    svc, client = api
    pairs = [near_pair(svc, seed) for seed in (31, 32, 33)]
    first = client.get("/api/duplicates", params={"limit": 2}).json()["data"]
    assert [g["file"]["id"] for g in first["groups"]] == [p[0].id for p in pairs[:2]]
    assert first["next_after"] == pairs[1][0].id
    member = first["groups"][0]["members"][0]
    assert member["file"]["id"] == pairs[0][1].id
    assert member["distance"] == pairs[0][1].near_distance <= 6
    rest = client.get(
        "/api/duplicates", params={"limit": 2, "after": first["next_after"]}
    ).json()["data"]
    assert [g["file"]["id"] for g in rest["groups"]] == [pairs[2][0].id]
    assert rest["next_after"] is None
    is_error(
        client.get("/api/duplicates", params={"limit": 0}), 400, "VALIDATION_ERROR"
    )
    is_error(
        client.get("/api/duplicates", params={"after": "x"}), 400, "VALIDATION_ERROR"
    )


def test_resolve_keep_and_duplicate(api: Any) -> None:
    svc, client = api
    (big, kept), (big2, dup) = near_pair(svc, 41), near_pair(svc, 42)
    is_error(
        client.post(f"/api/duplicates/{kept.id}/resolve", json={"action": "delete"}),
        400,
        "VALIDATION_ERROR",
    )
    is_error(
        client.post(f"/api/duplicates/{big.id}/resolve", json={"action": "keep"}),
        409,
        "CONFLICT",
    )
    is_error(
        client.post("/api/duplicates/424242/resolve", json={"action": "keep"}),
        404,
        "NOT_FOUND",
    )

    answer = client.post(f"/api/duplicates/{kept.id}/resolve", json={"action": "keep"})
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["action"] == "keep" and data["file"]["near_duplicate_of"] is None
    assert database_proxy.execute_sql(
        "SELECT low, high FROM near_keeps"
    ).fetchall() == [(big.id, kept.id)]

    before = Path(dup.current_path).read_bytes()
    answer = client.post(
        f"/api/duplicates/{dup.id}/resolve", json={"action": "duplicate"}
    )
    assert answer.status_code == 200
    moved = answer.json()["data"]["file"]
    assert moved["status"] == "DUPLICATE" and moved["duplicate_of"] == big2.id
    assert Path(moved["current_path"]).parent == svc.ctx.roots.duplicates_dir
    assert Path(moved["current_path"]).read_bytes() == before
    assert not Path(dup.current_path).exists()
    assert client.get("/api/duplicates").json()["data"]["groups"] == []


def test_review_page_reads_no_header_outside_the_folders(
    api: Any, tmp_path: Path
) -> None:
    # A flagged file whose row now points outside the folders (its inbox folder was
    # swapped for a symlink, a config change): the page shows it, reading nothing.
    svc, client = api
    big, small = near_pair(svc)
    outside = tmp_path / "elsewhere" / "small11.jpg"
    outside.parent.mkdir()
    Path(small.current_path).rename(outside)
    svc.ctx.writer.call(
        lambda: File.update(current_path=str(outside))
        .where(File.id == small.id)
        .execute()
    )
    page = client.get("/dashboard/fragments/groups")
    assert page.status_code == 200, page.text
    assert "1024 × 768" in page.text  # the file inside: its header is read
    assert "small11.jpg" in page.text and "400 × 300" not in page.text
