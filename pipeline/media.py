"""Media kinds by file extension, and which media file a sidecar belongs to.

Extensions are stored lower-case with the leading dot (``".jpg"``), the form
``Path.suffix.lower()`` gives; every helper here is case-insensitive.
"""

import os
import re
from pathlib import PurePath
from typing import Literal

MediaKind = Literal["photos", "videos"]

# Camera RAW formats in use by the common makers (Canon, Nikon, Sony, Fujifilm,
# Olympus/OM, Panasonic, Pentax, Samsung, Sigma, Leica, Hasselblad, Phase One, ...):
# with intake.media_only a missing one would be left in the inbox as SKIPPED.
RAW_EXTS: frozenset[str] = frozenset(
    {".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng"}
    | {".orf", ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".fff", ".erf"}
    | {".kdc", ".dcr", ".mrw", ".rwl", ".iiq", ".mef", ".mos"}
)
IMAGE_EXTS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".tif", ".tiff", ".gif"}
    | {".heic", ".heif", ".avif", ".jxl", ".bmp"}
    | RAW_EXTS
)
VIDEO_EXTS: frozenset[str] = frozenset(
    {".mp4", ".mov", ".m4v", ".3gp", ".3g2", ".avi", ".mkv", ".webm", ".wmv"}
    | {".mts", ".m2ts", ".mpg", ".mpeg", ".mod", ".tod", ".insv", ".lrv"}
)
# .thm: the small JPEG a Canon or GoPro camera writes beside each video.
SIDECAR_EXTS: frozenset[str] = frozenset({".xmp", ".aae", ".json", ".thm"})
MEDIA_EXTS: frozenset[str] = IMAGE_EXTS | VIDEO_EXTS

# Google Takeout names a photo's metadata `IMG_1.JPG.json`, newer exports
# `IMG_1.JPG.supplemental-metadata.json`, cut to fit 51 characters when long
# (`IMG_1.JPG.supplemental-me.json`).
_TAKEOUT_TAG = "supplemental-metadata"
# Takeout numbers clashing names as `IMG_1.JPG(1).json` for `IMG_1(1).JPG`.
_TAKEOUT_COUNTER = re.compile(r"^(?P<base>.+)(?P<ext>\.[^.()]+)(?P<n>\(\d+\))$")


def _suffix(path: str | os.PathLike[str]) -> str:
    # os.path, not PurePath: this runs several times per file on the sort's hot path.
    return os.path.splitext(os.fspath(path))[1].lower()


def media_kind(path: str | os.PathLike[str]) -> MediaKind | None:
    """Return "photos" or "videos" by extension, or None for anything else."""
    suffix = _suffix(path)
    if suffix in IMAGE_EXTS:
        return "photos"
    if suffix in VIDEO_EXTS:
        return "videos"
    return None


def is_raw(path: str | os.PathLike[str]) -> bool:
    """True for a camera RAW extension (CR2, NEF, ARW, DNG)."""
    return _suffix(path) in RAW_EXTS


def is_sidecar(path: str | os.PathLike[str]) -> bool:
    """True for a metadata sidecar extension (XMP, AAE, JSON, THM)."""
    return _suffix(path) in SIDECAR_EXTS


def is_media_or_sidecar(path: str | os.PathLike[str]) -> bool:
    """True for a photo, a video or a sidecar of one (what `intake.media_only` keeps)."""
    suffix = _suffix(path)
    return suffix in MEDIA_EXTS or suffix in SIDECAR_EXTS


def _strip_takeout_tag(name: str) -> str:
    head, dot, tag = name.rpartition(".")
    if dot and tag and _TAKEOUT_TAG.startswith(tag.lower()):
        if PurePath(head).suffix.lower() in MEDIA_EXTS:
            return head
    return name


def sidecar_stem(path: str | os.PathLike[str]) -> str | None:
    """Return the stem of the media file a sidecar describes, or None if not one.

    `IMG_1.xmp`, `IMG_1.JPG.xmp`, `IMG_1.JPG.json` and
    `IMG_1.JPG.supplemental-metadata.json` all give "IMG_1"; Takeout's
    `IMG_1.JPG(1).json` gives "IMG_1(1)". Compare the result with the media
    file's `Path.stem`.
    """
    if not is_sidecar(path):
        return None
    name = _strip_takeout_tag(PurePath(path).stem)
    counted = _TAKEOUT_COUNTER.match(name)
    if counted and counted["ext"].lower() in MEDIA_EXTS:
        return counted["base"] + counted["n"]
    inner = PurePath(name)
    if inner.suffix.lower() in MEDIA_EXTS and inner.stem:
        return inner.stem
    return name
