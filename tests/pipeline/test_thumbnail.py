"""Previews: upright, at most 320 px, cached by content; headers read without decoding."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from pipeline import thumbnail
from pipeline.fsops import TEMP_PREFIX


def camera_jpeg(path: Path, orientation: int = 1) -> Path:
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "FUJIFILM", "X-T30"
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = "2024:03:07 14:24:05"
    Image.new("RGB", (1000, 600), (10, 120, 200)).save(path, exif=exif.tobytes())
    return path


def test_describe_reads_size_camera_and_date_upright(tmp_path: Path) -> None:
    info = thumbnail.describe(camera_jpeg(tmp_path / "a.jpg", orientation=6))
    assert info == {
        "width": 600,
        "height": 1000,
        "camera": "FUJIFILM X-T30",
        "taken": "2024-03-07 14:24:05",
    }
    text = tmp_path / "a.txt"
    text.write_text("x")
    assert thumbnail.describe(text)["width"] is None
    broken = tmp_path / "b.jpg"
    broken.write_bytes(b"\xff\xd8garbage")
    assert thumbnail.describe(broken) == {
        "width": None,
        "height": None,
        "camera": None,
        "taken": None,
    }


def test_thumbnail_is_cached_per_content(tmp_path: Path) -> None:
    src = camera_jpeg(tmp_path / "a.jpg")
    cache = tmp_path / "tmp"
    first = thumbnail.thumbnail(src, cache, 7, "ab" * 32)
    assert first is not None and first.name == f"{TEMP_PREFIX}thumb-7-{'ab' * 8}.jpg"
    assert Image.open(first).size == (320, 192)
    assert thumbnail.thumbnail(src, cache, 7, "ab" * 32) == first
    other = thumbnail.thumbnail(src, cache, 7, "cd" * 32)
    assert other is not None and other != first  # changed content, new preview
    assert sorted(p.name for p in cache.iterdir()) == sorted([first.name, other.name])
    assert thumbnail.thumbnail(tmp_path / "none.jpg", cache, 8, None) is None
