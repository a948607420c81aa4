"""Builders of small real media files with chosen capture metadata, for tests.

Images get a distinct pattern per `seed` (default: from the file name), so two
fixtures are neither byte- nor perceptual-hash duplicates unless asked to be.
EXIF values may be a `datetime` (written as "YYYY:MM:DD HH:MM:SS") or a raw
string (to write invalid values such as "0000:00:00 00:00:00").

    make_jpeg(p, datetime(2023, 4, 12, 10, 30), offset="+02:00", subsec="123",
              camera=("Apple", "iPhone 12"))
    make_mp4(p, creation_time_utc=datetime(2023, 7, 1, 3, 30, tzinfo=UTC))
    make_jpeg(p, exif=Exif(digitized=datetime(2023, 4, 12)))   # all the tags
"""

import io
import os
import struct
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import ExifTags, Image

pillow_heif.register_heif_opener()

ExifValue = datetime | str | None
Camera = tuple[str, str] | str | None

_QT_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Exif:
    """The capture-related EXIF tags of a fixture; None leaves a tag out."""

    original: ExifValue = None  # DateTimeOriginal (EXIF IFD)
    offset_original: str | None = None  # OffsetTimeOriginal
    subsec_original: str | None = None  # SubSecTimeOriginal
    digitized: ExifValue = None  # DateTimeDigitized / CreateDate
    offset_digitized: str | None = None
    subsec_digitized: str | None = None
    modified: ExifValue = None  # DateTime (IFD0)
    offset: str | None = None  # OffsetTime, DateTime's offset
    subsec: str | None = None  # SubSecTime
    camera: Camera = None  # (Make, Model); a str "Canon EOS R5" -> Make "Canon"
    little_endian: bool = False

    def to_bytes(self) -> bytes:
        """The EXIF block as Pillow writes it (b"Exif\\0\\0" + TIFF)."""
        exif = Image.Exif()
        if self.little_endian:
            exif.endian = "<"
        base, ifd = ExifTags.Base, exif.get_ifd(ExifTags.IFD.Exif)
        make, model = _make_model(self.camera)
        for tags, tag, value in (
            (exif, base.Make, make),
            (exif, base.Model, model),
            (exif, base.DateTime, _text(self.modified)),
            (ifd, base.DateTimeOriginal, _text(self.original)),
            (ifd, base.DateTimeDigitized, _text(self.digitized)),
            (ifd, base.OffsetTime, self.offset),
            (ifd, base.OffsetTimeOriginal, self.offset_original),
            (ifd, base.OffsetTimeDigitized, self.offset_digitized),
            (ifd, base.SubsecTime, self.subsec),
            (ifd, base.SubsecTimeOriginal, self.subsec_original),
            (ifd, base.SubsecTimeDigitized, self.subsec_digitized),
        ):
            if value is not None:
                tags[tag] = value
        return exif.tobytes()

    def tiff(self) -> bytes:
        """The bare TIFF block (what a PNG eXIf chunk holds)."""
        return self.to_bytes().removeprefix(b"Exif\x00\x00")


def _text(value: ExifValue) -> str | None:
    if isinstance(value, datetime):
        return value.strftime("%Y:%m:%d %H:%M:%S")
    return value


def _make_model(camera: Camera) -> tuple[str | None, str | None]:
    if camera is None:
        return None, None
    if isinstance(camera, str):
        return camera.split()[0], camera
    return camera


def _exif_of(
    exif_dt: ExifValue,
    offset: str | None,
    subsec: str | None,
    camera: Camera,
    exif: "Exif | bytes | None",
) -> bytes | None:
    if isinstance(exif, bytes):
        return exif
    if exif is not None:
        return exif.to_bytes()
    if exif_dt is None and camera is None:
        return None
    return Exif(
        original=exif_dt, offset_original=offset, subsec_original=subsec, camera=camera
    ).to_bytes()


def pattern(size: tuple[int, int], seed: int) -> Image.Image:
    """A random 8x8 block pattern scaled to `size`: distinct pHash per seed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks, "RGB").resize(size, Image.Resampling.NEAREST)


def _image(path: Path, size: tuple[int, int], seed: int | None) -> Image.Image:
    return pattern(size, zlib.crc32(path.name.encode()) if seed is None else seed)


def _save(path: Path, img: Image.Image, fmt: str, exif: bytes | None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {} if exif is None else {"exif": exif}
    img.save(path, fmt, **kwargs)
    return path


def make_jpeg(
    path: Path,
    exif_dt: ExifValue = None,
    *,
    offset: str | None = None,
    subsec: str | None = None,
    camera: Camera = None,
    exif: Exif | bytes | None = None,
    size: tuple[int, int] = (64, 48),
    seed: int | None = None,
) -> Path:
    """A JPEG; with `exif_dt` its DateTimeOriginal (+ OffsetTimeOriginal, SubSec)."""
    data = _exif_of(exif_dt, offset, subsec, camera, exif)
    return _save(path, _image(path, size, seed), "JPEG", data)


def make_heic(
    path: Path,
    exif_dt: ExifValue = None,
    *,
    offset: str | None = None,
    subsec: str | None = None,
    camera: Camera = None,
    exif: Exif | bytes | None = None,
    size: tuple[int, int] = (64, 48),
    seed: int | None = None,
) -> Path:
    """A HEIC image (pillow-heif) with the EXIF item, as make_jpeg."""
    data = _exif_of(exif_dt, offset, subsec, camera, exif)
    return _save(path, _image(path, size, seed), "HEIF", data)


def make_tiff_raw(
    path: Path,
    exif_dt: ExifValue = None,
    *,
    offset: str | None = None,
    subsec: str | None = None,
    camera: Camera = None,
    exif: Exif | bytes | None = None,
    size: tuple[int, int] = (32, 24),
    seed: int | None = None,
) -> Path:
    """A TIFF with an EXIF IFD: what CR2/NEF/ARW/DNG look like to a date reader.

    Give it the RAW extension you need (`x.dng`, `x.NEF`).
    """
    data = _exif_of(exif_dt, offset, subsec, camera, exif)
    return _save(path, _image(path, size, seed), "TIFF", data)


def make_png(
    path: Path,
    exif_dt: ExifValue = None,
    *,
    offset: str | None = None,
    subsec: str | None = None,
    camera: Camera = None,
    exif: Exif | bytes | None = None,
    size: tuple[int, int] = (32, 24),
    seed: int | None = None,
) -> Path:
    """A PNG; EXIF goes into an `eXIf` chunk."""
    data = _exif_of(exif_dt, offset, subsec, camera, exif)
    return _save(path, _image(path, size, seed), "PNG", data)


def make_webp(
    path: Path,
    exif_dt: ExifValue = None,
    *,
    offset: str | None = None,
    subsec: str | None = None,
    camera: Camera = None,
    exif: Exif | bytes | None = None,
    size: tuple[int, int] = (32, 24),
    seed: int | None = None,
) -> Path:
    """A WebP (extended format); EXIF goes into an `EXIF` chunk."""
    data = _exif_of(exif_dt, offset, subsec, camera, exif)
    return _save(path, _image(path, size, seed), "WEBP", data)


def jpeg_bytes(exif: Exif | bytes | None = None, seed: int = 0) -> bytes:
    """An in-memory JPEG, for tests that splice segments or corrupt bytes."""
    buf = io.BytesIO()
    data = exif.to_bytes() if isinstance(exif, Exif) else exif
    kwargs = {} if data is None else {"exif": data}
    pattern((32, 24), seed).save(buf, "JPEG", **kwargs)
    return buf.getvalue()


# ------------------------------------------------------------------ ISO-BMFF


def box(kind: bytes, payload: bytes = b"", *, size: int | None = None) -> bytes:
    """An ISO-BMFF box; `size` overrides the header's size field (for corruption)."""
    header = struct.pack(">I4s", 8 + len(payload) if size is None else size, kind)
    return header + payload


def large_box(kind: bytes, payload: bytes = b"", *, size: int | None = None) -> bytes:
    """A box with a 64-bit size (size field 1, largesize after the type)."""
    real = 16 + len(payload) if size is None else size
    return struct.pack(">I4sQ", 1, kind, real) + payload


def full_box(kind: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags) + payload)


def heif_bytes(
    exif: Exif,
    *,
    iloc_version: int = 0,
    infe_version: int = 2,
    in_idat: bool = False,
    base_offset: int = 0,
) -> bytes:
    """A hand-built HEIF with only an Exif item, to cover iloc/infe variants.

    `in_idat` stores the item in an idat box (construction method 1, iloc
    version 1 or 2); `base_offset` moves the extent's offset into iloc's base.
    """
    item = struct.pack(">I", 6) + b"Exif\x00\x00" + exif.tiff()
    id_size = 2 if infe_version == 2 else 4
    infe_body = (1).to_bytes(id_size, "big") + struct.pack(">H4s", 0, b"Exif") + b"\0"
    infe = full_box(b"infe", infe_version, 0, infe_body)
    iinf = full_box(b"iinf", 0, 0, struct.pack(">H", 1) + infe)
    ftyp = box(b"ftyp", b"heic" + struct.pack(">I", 0) + b"mif1heic")
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"pict") + b"\0")

    def iloc(offset: int) -> bytes:
        item_id = struct.pack(">I" if iloc_version == 2 else ">H", 1)
        method = struct.pack(">H", 1 if in_idat else 0) if iloc_version else b""
        count = struct.pack(">I" if iloc_version == 2 else ">H", 1)
        entry = item_id + method + struct.pack(">HIH", 0, base_offset, 1)
        entry += struct.pack(">II", offset - base_offset, len(item))
        return full_box(b"iloc", iloc_version, 0, bytes([0x44, 0x40]) + count + entry)

    if in_idat:
        meta = full_box(
            b"meta", 0, 0, hdlr + iinf + iloc(base_offset) + box(b"idat", item)
        )
        return ftyp + meta
    # The item goes in mdat after meta; its absolute offset needs meta's size.
    meta_size = len(full_box(b"meta", 0, 0, hdlr + iinf + iloc(base_offset)))
    offset = len(ftyp) + meta_size + 8
    meta = full_box(b"meta", 0, 0, hdlr + iinf + iloc(offset))
    return ftyp + meta + box(b"mdat", item)


def qt_seconds(when: datetime | None) -> int:
    """QuickTime time: seconds since 1904-01-01 UTC (0 = unknown); naive = UTC."""
    if when is None:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int((when - _QT_EPOCH).total_seconds())


def mvhd(creation_time_utc: datetime | None, version: int = 0) -> bytes:
    """A movie header box with the given creation time (version 0: 32-bit)."""
    created = qt_seconds(creation_time_utc)
    if version == 1:
        times = struct.pack(">QQIQ", created, created, 1000, 5000)
    else:
        times = struct.pack(">IIII", created, created, 1000, 5000)
    # rate, volume, reserved; matrix and pre_defined left zero; next_track_ID
    rest = struct.pack(">IH10x", 0x00010000, 0x0100) + bytes(36 + 24)
    rest += struct.pack(">I", 2)
    return full_box(b"mvhd", version, 0, times + rest)


def apple_keys_meta(values: dict[str, str]) -> bytes:
    """moov/meta with hdlr 'mdta', keys and ilst, as iPhones write it."""
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s12x", 0, b"mdta") + b"\x00")
    # each key entry: size, namespace 'mdta', name
    keys = b"".join(box(b"mdta", name.encode()) for name in values)
    keys_box = full_box(b"keys", 0, 0, struct.pack(">I", len(values)) + keys)
    items = b"".join(
        box(
            struct.pack(">I", index),
            box(b"data", struct.pack(">II", 1, 0) + value.encode()),
        )
        for index, value in enumerate(values.values(), 1)
    )
    return box(b"meta", hdlr + keys_box + box(b"ilst", items))


def mp4_bytes(
    creation_time_utc: datetime | None = None,
    *,
    brand: bytes = b"isom",
    apple: dict[str, str] | None = None,
    mvhd_version: int = 0,
    moov_last: bool = False,
    large_mdat: bool = False,
    mdat_size: int = 256,
) -> bytes:
    """An MP4/MOV skeleton: ftyp, moov (mvhd [+ Apple keys]), mdat."""
    ftyp = box(b"ftyp", brand + struct.pack(">I", 0) + brand + b"mp41")
    moov = box(
        b"moov",
        mvhd(creation_time_utc, mvhd_version)
        + (apple_keys_meta(apple) if apple else b""),
    )
    payload = bytes(mdat_size)
    mdat = large_box(b"mdat", payload) if large_mdat else box(b"mdat", payload)
    return ftyp + (mdat + moov if moov_last else moov + mdat)


def make_mp4(
    path: Path,
    creation_time_utc: datetime | None = None,
    *,
    brand: bytes = b"isom",
    apple: dict[str, str] | None = None,
    mvhd_version: int = 0,
    moov_last: bool = False,
    large_mdat: bool = False,
) -> Path:
    """An MP4 whose mvhd creation_time is `creation_time_utc` (None -> 0, unknown).

    `apple` adds com.apple.quicktime.* keys, e.g.
    `{"com.apple.quicktime.creationdate": "2023-06-30T23:30:00-0400"}`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        mp4_bytes(
            creation_time_utc,
            brand=brand,
            apple=apple,
            mvhd_version=mvhd_version,
            moov_last=moov_last,
            large_mdat=large_mdat,
        )
    )
    return path


def make_mov(
    path: Path,
    creation_time_utc: datetime | None = None,
    *,
    creationdate: str | None = None,
    camera: tuple[str, str] | None = None,
) -> Path:
    """A QuickTime .mov (brand 'qt  '), optionally with iPhone-style keys."""
    apple: dict[str, str] = {}
    if creationdate is not None:
        apple["com.apple.quicktime.creationdate"] = creationdate
    if camera is not None:
        apple["com.apple.quicktime.make"] = camera[0]
        apple["com.apple.quicktime.model"] = camera[1]
    return make_mp4(path, creation_time_utc, brand=b"qt  ", apple=apple or None)


# ------------------------------------------------------------------- files


def set_mtime(path: Path, when: datetime) -> Path:
    """Set mtime (and atime) of `path` itself, not a symlink's target; naive = local."""
    stamp = when.timestamp()
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def make_plain(path: Path, data: bytes = b"no metadata here\n") -> Path:
    """A file no metadata reader recognises (for name and mtime cases)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
