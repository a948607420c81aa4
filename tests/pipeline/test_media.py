"""Media kinds by extension and the media file a sidecar belongs to."""

from pathlib import Path

import pytest

from pipeline.media import (
    IMAGE_EXTS,
    SIDECAR_EXTS,
    VIDEO_EXTS,
    is_raw,
    is_sidecar,
    media_kind,
    sidecar_stem,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.jpg", "photos"),
        ("a.JPEG", "photos"),
        ("dir.mp4/a.Png", "photos"),
        ("a.webp", "photos"),
        ("a.tif", "photos"),
        ("a.TIFF", "photos"),
        ("a.gif", "photos"),
        ("a.HEIC", "photos"),
        ("a.heif", "photos"),
        ("a.CR2", "photos"),
        ("a.nef", "photos"),
        ("a.ARW", "photos"),
        ("a.dng", "photos"),
        ("a.mp4", "videos"),
        ("a.MOV", "videos"),
        ("a.m4v", "videos"),
        ("a.3GP", "videos"),
        ("a.xmp", None),
        ("a.json", None),
        ("a.txt", None),
        ("jpg", None),
        (".jpg", None),  # a hidden file named ".jpg", no extension
        ("a.jpg.part", None),
    ],
)
def test_media_kind(name: str, kind: str | None) -> None:
    assert media_kind(name) == kind
    assert media_kind(Path(name)) == kind


def test_extension_sets_are_disjoint_lower_case_and_dotted() -> None:
    assert not IMAGE_EXTS & VIDEO_EXTS
    assert not (IMAGE_EXTS | VIDEO_EXTS) & SIDECAR_EXTS
    for ext in IMAGE_EXTS | VIDEO_EXTS | SIDECAR_EXTS:
        assert ext.startswith(".") and ext == ext.lower()


@pytest.mark.parametrize(
    ("name", "raw"), [("a.DNG", True), ("a.cr2", True), ("a.jpg", False)]
)
def test_is_raw(name: str, raw: bool) -> None:
    assert is_raw(name) is raw


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("IMG_1.xmp", "IMG_1"),
        ("IMG_1.JPG.xmp", "IMG_1"),
        ("IMG_1.XMP", "IMG_1"),
        ("IMG_1.AAE", "IMG_1"),
        ("IMG_1.HEIC.aae", "IMG_1"),
        ("IMG_1.jpg.json", "IMG_1"),
        ("IMG_1.MP4.json", "IMG_1"),
        ("IMG_1.JPG.supplemental-metadata.json", "IMG_1"),
        ("IMG_1.jpg.supplemental-me.json", "IMG_1"),
        ("IMG_1.JPG.supp.json", "IMG_1"),
        ("IMG_1.JPG(1).json", "IMG_1(1)"),
        ("photos/2019/IMG_1.jpg.json", "IMG_1"),
        ("my.holiday.xmp", "my.holiday"),
        ("metadata.json", "metadata"),
        ("notes.supp.json", "notes.supp"),  # not after a media extension
    ],
)
def test_sidecar_stem(name: str, stem: str) -> None:
    assert is_sidecar(name)
    assert sidecar_stem(name) == stem


@pytest.mark.parametrize("name", ["IMG_1.jpg", "IMG_1.mov", "a.txt", "xmp"])
def test_not_a_sidecar(name: str) -> None:
    assert not is_sidecar(name)
    assert sidecar_stem(name) is None


def test_sidecar_stem_matches_media_stem() -> None:
    media = Path("IMG_20230412_103000.HEIC")
    for sidecar in ("IMG_20230412_103000.AAE", "IMG_20230412_103000.HEIC.json"):
        assert sidecar_stem(sidecar) == media.stem
