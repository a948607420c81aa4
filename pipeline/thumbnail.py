"""Small JPEG previews of images for the dashboard, cached in temp_dir.

A preview is made once per file content (its SHA-256 is in the cache name, so a file
that changed gets a new one) and named with the daemon's temp prefix, so cleanup ages
it out like any other file the daemon left in `temp_dir`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from PIL import Image, ImageOps

from pipeline.fsops import TEMP_PREFIX
from pipeline.hashing import _formats, _open_regular, is_image

MAX_SIDE = 320
QUALITY = 80


def cache_path(temp_dir: Path, file_id: int, sha256: str | None) -> Path:
    """Where the preview of this file content lives."""
    tag = (sha256 or "nohash")[:16]
    return Path(temp_dir) / f"{TEMP_PREFIX}thumb-{int(file_id)}-{tag}.jpg"


def render(src: Path) -> Image.Image | None:
    """The upright image scaled to fit MAX_SIDE, RGB; None if it cannot be decoded.

    Never follows a symlink or opens a special file; EXIF orientation is applied.
    """
    src = Path(src)
    if not is_image(src):
        return None
    try:
        with os.fdopen(_open_regular(src), "rb") as stream:
            with Image.open(stream, formats=_formats()) as img:
                if img.format == "JPEG":
                    img.draft("RGB", (MAX_SIDE * 2, MAX_SIDE * 2))
                upright = ImageOps.exif_transpose(img)
                upright.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
                return upright.convert("RGB")
    except Exception:
        # Undecodable, truncated, a bomb or a special file: no preview, nothing else.
        return None


def thumbnail(
    src: Path, temp_dir: Path, file_id: int, sha256: str | None
) -> Path | None:
    """The cached preview of `src`, made on first use; None when it is not an image."""
    cached = cache_path(temp_dir, file_id, sha256)
    if cached.is_file() and not cached.is_symlink():
        return cached
    image = render(src)
    if image is None:
        return None
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Written under a private name, then renamed: a reader never sees half a JPEG.
    partial = cached.with_name(f"{TEMP_PREFIX}{secrets.token_hex(4)}-{cached.name}")
    try:
        image.save(partial, "JPEG", quality=QUALITY)
        os.replace(partial, cached)
    finally:
        partial.unlink(missing_ok=True)
    return cached


def describe(src: Path) -> dict[str, object]:
    """Width, height (upright), camera and EXIF capture time, from the header only."""
    info: dict[str, object] = {
        "width": None,
        "height": None,
        "camera": None,
        "taken": None,
    }
    if not is_image(Path(src)):
        return info
    try:
        with os.fdopen(_open_regular(Path(src)), "rb") as stream:
            with Image.open(stream, formats=_formats()) as img:
                width, height = img.size
                exif = img.getexif()
                if exif.get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
                make = str(exif.get(0x010F, "") or "").strip("\x00 ")
                model = str(exif.get(0x0110, "") or "").strip("\x00 ")
                camera = model if model.startswith(make) else f"{make} {model}"
                taken = str(exif.get_ifd(0x8769).get(0x9003, "") or "").strip("\x00 ")
                info.update(
                    width=width,
                    height=height,
                    camera=camera.strip() or None,
                    # "2024:03:07 14:24:05" as written by the camera (no zone).
                    taken=taken.replace(":", "-", 2) if taken else None,
                )
    except Exception:
        pass  # unreadable header: shown as unknown
    return info
