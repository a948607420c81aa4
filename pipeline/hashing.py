"""Content hashes: streamed SHA-256 and a fast 64-bit perceptual hash (pHash).

`sha256_file` reads only regular files, never through a symlink, and raises
`FileChanged` when the file changed, vanished or was replaced while it was read: the
caller retries later instead of recording a wrong hash. `phash` matches
`imagehash.phash` (same DCT algorithm and bit order) but decodes JPEGs at reduced scale
and applies EXIF orientation; it returns a signed 64-bit int, ready for SQLite.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from PIL import Image

from pipeline.hashbits import MASK64

CHUNK = 1 << 20
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".heic", ".heif"}
)
# Only these Pillow decoders may run: no Ghostscript (EPS) or other exotic plugins on
# files that merely carry an image extension.
DECODER_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "GIF", "HEIF")

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
IMG_SIZE = HASH_SIZE * HIGHFREQ_FACTOR
# JPEG draft decoding (1/2, 1/4 or 1/8 scale) and the box reduce before LANCZOS stop
# at this side, so the final LANCZOS step to 32x32 still sees 4+ source pixels per
# output pixel: the hash stays within a bit or two of imagehash's full-size resize.
DRAFT_MIN_SIDE = IMG_SIZE * 4
REDUCING_GAP = DRAFT_MIN_SIDE / IMG_SIZE
# DCT coefficients this close to 0 are float noise (pixels are integers): zeroing them
# makes a flat image hash like imagehash's instead of like random bits.
DCT_EPSILON = 1e-6

_FILE_TYPES = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symlink"),
)


class FileChanged(Exception):
    """The file changed, vanished or was replaced while hashed; retry it later."""


@dataclass(frozen=True)
class Digest:
    """SHA-256 (hex) of exactly `size` bytes, as of modification time `mtime_ns`."""

    sha256: str
    size: int
    mtime_ns: int


def is_image(path: Path) -> bool:
    """True when the extension (any case) is one `phash` handles."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes, signed or unsigned form alike."""
    return ((a ^ b) & MASK64).bit_count()


def to_signed64(value: int) -> int:
    """An unsigned 64-bit value as the signed int64 SQLite can store."""
    value &= MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def from_signed64(value: int) -> int:
    """The unsigned 64-bit value (0 .. 2**64-1) of a stored signed int64."""
    return value & MASK64


# --------------------------------------------------------------------------- SHA-256


def _describe(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    for check, name in _FILE_TYPES:
        if check(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _refuse_if_special(path: Path, mode: int) -> None:
    kind = _describe(mode)
    if kind is not None:
        raise ValueError(f"refusing to read {path}: it is {kind}, not a regular file")


def _precheck(path: Path) -> None:
    """Refuse special files before opening them (opening a device can have effects)."""
    _refuse_if_special(path, os.lstat(path).st_mode)


def _open_regular(path: Path) -> int:
    """Open `path` read-only without following a symlink or blocking on a FIFO.

    The fstat after open is what makes this safe: the path may be swapped for a
    symlink or FIFO between `_precheck` and `os.open`.
    """
    try:
        _precheck(path)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise FileChanged(f"{path} vanished before it could be hashed") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"refusing to read {path}: it is a symlink") from exc
        if exc.errno == errno.ENXIO:
            raise ValueError(f"refusing to read {path}: not a regular file") from exc
        raise
    try:
        _refuse_if_special(path, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


_buffers = threading.local()


def _chunk_buffer() -> memoryview:
    """This thread's reusable CHUNK-sized read buffer (no 1 MiB allocation per file)."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(CHUNK))
    return view


def _read_chunk(fd: int, view: memoryview) -> int:
    """One read into `view`; a seam tests use to change the file mid-hash."""
    return os.readv(fd, [view])


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (
        a.st_dev == b.st_dev
        and a.st_ino == b.st_ino
        and a.st_size == b.st_size
        and a.st_mtime_ns == b.st_mtime_ns
        and a.st_ctime_ns == b.st_ctime_ns
    )


def sha256_file(path: Path) -> Digest:
    """Stream `path` through SHA-256 in `CHUNK` pieces.

    Raises `ValueError` for a symlink, FIFO, socket, device or directory (never blocks),
    `FileChanged` when the file vanished, or its size/mtime/ctime/inode differ between
    the start and the end of the read (retry later), and `OSError` for other failures
    such as a permission error.
    """
    path = Path(path)
    fd = _open_regular(path)
    try:
        before = os.fstat(fd)
        digest = hashlib.sha256()
        view = _chunk_buffer()
        total = 0
        while n := _read_chunk(fd, view):
            digest.update(view[:n])
            total += n
        after = os.fstat(fd)
    finally:
        os.close(fd)
    try:
        on_disk = os.stat(path, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise FileChanged(f"{path} vanished while it was hashed") from exc
    if total != before.st_size or not (
        _same_file(before, after) and _same_file(before, on_disk)
    ):
        raise FileChanged(f"{path} changed while it was hashed")
    return Digest(digest.hexdigest(), total, before.st_mtime_ns)


# ----------------------------------------------------------------------------- pHash


def _dct_matrix(n: int) -> np.ndarray:
    """DCT-II matrix with scipy.fftpack's default scale: y = M @ x."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


# Only the first HASH_SIZE rows are ever used: the low frequencies.
_DCT_LOW = np.ascontiguousarray(_dct_matrix(IMG_SIZE)[:HASH_SIZE])

_heif_lock = threading.Lock()
_decoder_formats: tuple[str, ...] | None = None


def _formats() -> tuple[str, ...]:
    """Decoders to allow; registers the pillow-heif opener once per process.

    HEIF must be registered before any open (even of a .jpg: phones mislabel HEIC),
    since Pillow fails on a `formats` entry it does not know.
    """
    global _decoder_formats
    if _decoder_formats is None:
        with _heif_lock:
            if _decoder_formats is None:
                try:
                    from pillow_heif import register_heif_opener

                    register_heif_opener()
                    _decoder_formats = DECODER_FORMATS
                except Exception as exc:
                    logger.bind(event="phash").warning(
                        "HEIC/HEIF images get no pHash: pillow-heif unusable ({})", exc
                    )
                    _decoder_formats = tuple(f for f in DECODER_FORMATS if f != "HEIF")
    return _decoder_formats


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to the 32x32 array (same as ImageOps.exif_transpose).

    Doing it after the resize is equivalent and costs nothing.
    """
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1, :]
    if orientation == 5:
        return pixels.T
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return np.rot90(pixels, 2).T
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
        return int(value)
    except Exception:
        # Broken EXIF must not cost the hash: treat it as upright.
        return 1


def _small_gray(img: Image.Image) -> np.ndarray:
    """The image as a 32x32 float grayscale array, decoded as cheaply as possible."""
    if img.format == "JPEG":
        img.draft("L", (DRAFT_MIN_SIDE, DRAFT_MIN_SIDE))
    gray = img.convert("L")
    small = gray.resize(
        (IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP
    )
    return np.asarray(small, dtype=np.float64)


def phash_pixels(pixels: np.ndarray) -> int:
    """imagehash's pHash bits of a 32x32 grayscale array, as an unsigned int.

    Bit order is imagehash's: `int(str(imagehash.phash(img)), 16)`.
    """
    low = _DCT_LOW @ pixels @ _DCT_LOW.T
    low[np.abs(low) < DCT_EPSILON] = 0.0
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash(path: Path) -> int | None:
    """64-bit pHash of an image as a signed int64 (see `to_signed64`), else None.

    None for a non-image extension and for anything that cannot be decoded (truncated,
    corrupt, not really an image, a special file); it never raises for bad input.
    Unsigned value = `from_signed64(h)` = `int(str(imagehash.phash(img)), 16)` for the
    upright image. Symlinks are not followed.
    """
    path = Path(path)
    if not is_image(path):
        return None
    formats = _formats()
    try:
        with os.fdopen(_open_regular(path), "rb") as stream:
            with Image.open(stream, formats=formats) as img:
                pixels = _orient(_small_gray(img), _orientation(img))
    except Exception:
        # Corrupt, truncated or special files are expected input: the caller logs None.
        return None
    return to_signed64(phash_pixels(pixels))
