"""SHA-256 streaming with change detection, special-file refusal, and the fast pHash."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import socket
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps
from pillow_heif import register_heif_opener

from pipeline import hashing
from pipeline.hashing import (
    CHUNK,
    Digest,
    FileChanged,
    from_signed64,
    hamming,
    is_image,
    phash,
    sha256_file,
    to_signed64,
)

# ------------------------------------------------------------------------ helpers


def photo(seed: int, size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """A photo-like RGB image: smooth gradient, soft shapes, light grain."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = (w // 4, h // 4)
    grid = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    canvas = Image.fromarray(grid, "RGB").resize(small, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(8):
        cx, cy = int(rng.integers(small[0])), int(rng.integers(small[1]))
        rx, ry = int(rng.integers(8, small[0] // 3)), int(
            rng.integers(8, small[1] // 3)
        )
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
    full = np.asarray(canvas.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.normal(0, 4, full.shape).astype(np.int16)
    return Image.fromarray(np.clip(full + grain, 0, 255).astype(np.uint8), "RGB")


def save_jpeg(img: Image.Image, path: Path, quality: int = 90, **kw: object) -> Path:
    img.save(path, "JPEG", quality=quality, **kw)
    return path


def imagehash_int(path: Path) -> int:
    """The reference: imagehash on the plainly opened file, as an unsigned int."""
    with Image.open(path) as img:
        return int(str(imagehash.phash(img)), 16)


def our_hash(path: Path) -> int:
    value = phash(path)
    assert value is not None, path
    return from_signed64(value)


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    path.write_bytes(data)
    return data


def hook_after_first_read(monkeypatch: pytest.MonkeyPatch, action) -> list[int]:
    """Run `action()` once, right after the first chunk is read; return read sizes."""
    sizes: list[int] = []
    real = hashing._read_chunk

    def read(fd: int, view: memoryview) -> int:
        n = real(fd, view)
        sizes.append(n)
        if len(sizes) == 1:
            action()
        return n

    monkeypatch.setattr(hashing, "_read_chunk", read)
    return sizes


# ------------------------------------------------------------------------- sha256


@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK, CHUNK - 1, 2 * CHUNK + 123])
def test_sha256_matches_hashlib(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f.bin"
    data = write_random(path, size, seed=size)
    digest = sha256_file(path)
    assert digest == Digest(
        hashlib.sha256(data).hexdigest(), size, path.stat().st_mtime_ns
    )


def test_multi_chunk_file_is_read_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.bin"
    write_random(path, 2 * CHUNK + 5)
    sizes = hook_after_first_read(monkeypatch, lambda: None)
    sha256_file(path)
    assert sizes == [CHUNK, CHUNK, 5, 0]


def test_file_appended_while_hashed_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "growing.bin"
    write_random(path, 2 * CHUNK)

    def append() -> None:
        with path.open("ab") as f:
            f.write(b"more data arriving")

    hook_after_first_read(monkeypatch, append)
    with pytest.raises(FileChanged, match="changed"):
        sha256_file(path)


def test_same_size_rewrite_while_hashed_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rewritten.bin"
    write_random(path, 2 * CHUNK)
    # An old mtime makes the rewrite's new mtime differ whatever the clock granularity.
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))

    def rewrite_in_place() -> None:
        with path.open("r+b") as f:
            f.write(b"X" * 16)

    hook_after_first_read(monkeypatch, rewrite_in_place)
    with pytest.raises(FileChanged):
        sha256_file(path)


def test_file_vanishing_while_hashed_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "vanishing.bin"
    write_random(path, CHUNK + 10)
    hook_after_first_read(monkeypatch, path.unlink)
    with pytest.raises(FileChanged, match="vanished"):
        sha256_file(path)


def test_file_replaced_while_hashed_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "replaced.bin"
    other = tmp_path / "other.bin"
    data = write_random(path, CHUNK + 10)
    other.write_bytes(data)
    os.utime(other, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    hook_after_first_read(monkeypatch, lambda: other.replace(path))
    with pytest.raises(FileChanged, match="changed"):
        sha256_file(path)


def test_missing_file_raises_file_changed(tmp_path: Path) -> None:
    with pytest.raises(FileChanged, match="vanished"):
        sha256_file(tmp_path / "never-there.jpg")


def test_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "target.bin"
    target.write_bytes(b"secret")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="symlink"):
        sha256_file(link)


@pytest.mark.timeout(20)
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        sha256_file(fifo)


def test_socket_and_directory_are_refused(tmp_path: Path) -> None:
    sock_path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        with pytest.raises(ValueError, match="socket"):
            sha256_file(sock_path)
    with pytest.raises(ValueError, match="directory"):
        sha256_file(tmp_path)


def test_character_device_is_refused() -> None:
    with pytest.raises(ValueError, match="character device"):
        sha256_file(Path("/dev/null"))


@pytest.mark.timeout(20)
def test_checks_after_open_catch_a_swapped_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pretend the lstat pre-check passed (path swapped after it): open must refuse."""
    monkeypatch.setattr(hashing, "_precheck", lambda path: None)
    target = tmp_path / "target.bin"
    target.write_bytes(b"x")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="symlink") as info:
        sha256_file(link)
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ELOOP
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="FIFO"):
        sha256_file(fifo)


# ------------------------------------------------------------------ small helpers


def test_is_image_by_extension() -> None:
    for name in ["a.jpg", "a.JPEG", "a.png", "a.webp", "a.tif", "a.TIFF", "a.gif"]:
        assert is_image(Path(name)), name
    assert is_image(Path("IMG_0001.HEIC")) and is_image(Path("x.heif"))
    for name in ["a.mp4", "a.mov", "a.txt", "jpg", "a.jpg.part", "a.cr2"]:
        assert not is_image(Path(name)), name


def test_signed64_round_trip_and_hamming() -> None:
    for value in [0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 0x8000_0000_0000_0001]:
        signed = to_signed64(value)
        assert -(1 << 63) <= signed < (1 << 63)
        assert from_signed64(signed) == value
    assert to_signed64((1 << 64) - 1) == -1
    assert hamming(0, (1 << 64) - 1) == 64
    assert hamming(-1, (1 << 64) - 1) == 0
    assert hamming(to_signed64(0xF0), 0x0F) == 8


# -------------------------------------------------------------------------- pHash


def test_dct_matches_imagehash_exactly_on_32x32_input() -> None:
    """Same algorithm: a 32x32 grey input needs no resampling, so bits are equal."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        pixels = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        expected = int(str(imagehash.phash(Image.fromarray(pixels, "L"))), 16)
        assert hashing.phash_pixels(pixels.astype(np.float64)) == expected


def test_flat_image_hashes_like_imagehash(tmp_path: Path) -> None:
    path = tmp_path / "grey.png"
    Image.new("RGB", (300, 200), (120, 120, 120)).save(path)
    assert our_hash(path) == imagehash_int(path) == 1 << 63


@pytest.mark.parametrize(
    ("seed", "size", "quality"),
    [
        (1, (640, 480), 85),
        (2, (1024, 768), 90),
        (3, (1600, 1200), 95),
        (4, (480, 640), 90),
        (5, (2400, 1800), 92),
        (6, (333, 250), 80),
    ],
)
def test_jpeg_phash_agrees_with_imagehash(
    tmp_path: Path, seed: int, size: tuple[int, int], quality: int
) -> None:
    path = save_jpeg(photo(seed, size), tmp_path / "p.jpg", quality)
    assert hamming(our_hash(path), imagehash_int(path)) <= 4


@pytest.mark.parametrize(
    ("fmt", "name"),
    [("PNG", "p.png"), ("WEBP", "p.webp"), ("TIFF", "p.tiff"), ("GIF", "p.gif")],
)
def test_other_formats_agree_with_imagehash(
    tmp_path: Path, fmt: str, name: str
) -> None:
    path = tmp_path / name
    photo(7, (800, 600)).save(path, fmt)
    assert hamming(our_hash(path), imagehash_int(path)) <= 4


def test_resized_recompressed_copy_is_close_and_other_image_far(tmp_path: Path) -> None:
    img = photo(8, (1600, 1200))
    original = save_jpeg(img, tmp_path / "orig.jpg", 92)
    small = img.resize((640, 480), Image.Resampling.LANCZOS)
    copy = save_jpeg(small, tmp_path / "copy.jpg", 70)
    other = save_jpeg(photo(9, (1600, 1200)), tmp_path / "other.jpg", 92)
    assert hamming(our_hash(original), our_hash(copy)) <= 6
    assert hamming(our_hash(original), our_hash(other)) > 10


def test_exif_orientation_6_hashes_like_the_upright_image(tmp_path: Path) -> None:
    upright_img = photo(10, (1024, 768))
    upright = save_jpeg(upright_img, tmp_path / "upright.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": stored pixels are turned CCW
    stored = upright_img.transpose(Image.Transpose.ROTATE_90)
    rotated = save_jpeg(stored, tmp_path / "rotated.jpg", exif=exif.tobytes())
    assert hamming(our_hash(rotated), our_hash(upright)) <= 2
    # Ignoring the tag (as imagehash on the raw file does) would be far off.
    assert hamming(imagehash_int(rotated), our_hash(upright)) > 10


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_transform_matches_pillow(orientation: int) -> None:
    pixels = np.random.default_rng(orientation).integers(0, 256, (32, 32), np.uint8)
    img = Image.fromarray(pixels, "L")
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.info["exif"] = exif.tobytes()
    expected = np.asarray(ImageOps.exif_transpose(img))
    assert np.array_equal(hashing._orient(pixels, orientation), expected)


def test_heic_image_gets_a_hash(tmp_path: Path) -> None:
    register_heif_opener()
    img = photo(11, (800, 600))
    heic = tmp_path / "IMG_0001.HEIC"
    img.save(heic, "HEIF", quality=90)
    reference = save_jpeg(img, tmp_path / "same.jpg", 95)
    value = phash(heic)
    assert value is not None
    assert hamming(value, our_hash(reference)) <= 4


def test_heic_content_with_jpg_name_gets_a_hash(tmp_path: Path) -> None:
    register_heif_opener()
    mislabelled = tmp_path / "IMG_0002.jpg"
    photo(12, (640, 480)).save(mislabelled, "HEIF", quality=90)
    assert phash(mislabelled) is not None


def test_undecodable_inputs_give_none(tmp_path: Path) -> None:
    buf = io.BytesIO()
    photo(13, (800, 600)).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    header_only = tmp_path / "header.jpg"
    header_only.write_bytes(data[:200])
    for path in [truncated, text, empty, header_only, tmp_path / "missing.jpg"]:
        assert phash(path) is None, path


def test_non_image_extension_gives_none(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    save_jpeg(photo(14, (320, 240)), path)
    assert phash(path) is None


def test_symlinked_image_is_not_followed(tmp_path: Path) -> None:
    target = save_jpeg(photo(15, (320, 240)), tmp_path / "real.jpg")
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    assert phash(target) is not None
    assert phash(link) is None


@pytest.mark.timeout(20)
def test_fifo_named_like_an_image_gives_none_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert phash(fifo) is None


def test_phash_is_signed_int64(tmp_path: Path) -> None:
    values = []
    for seed in range(16, 24):
        path = save_jpeg(photo(seed, (320, 240)), tmp_path / f"{seed}.jpg")
        value = phash(path)
        assert value is not None and -(1 << 63) <= value < (1 << 63)
        values.append(value)
    assert len(set(values)) == len(values)
