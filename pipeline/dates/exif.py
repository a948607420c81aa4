"""EXIF: a hand-written TIFF walker for the few tags needed, exifread as fallback.

IFD0 and the EXIF sub-IFD are read; DateTimeOriginal/DateTimeDigitized found in
IFD0 (where some older cameras wrote them) count when the sub-IFD has none.
IFD0 tag 700 (XMP packet) is located here for pipeline.dates.xmp.
"""

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import exifread

from pipeline.dates.containers import TIFF_LOCATORS, Range
from pipeline.dates.reader import MAX_IFD_ENTRIES, MAX_READ, MAX_TEXT, Reader, Window
from pipeline.dates.values import CaptureDate, Corrupt, StrPath, debug, parse_datetime

# exifread warns through stdlib logging on every file without EXIF; at daemon
# scale that is noise, and a failed read is reported here at debug instead.
logging.getLogger("exifread").setLevel(logging.ERROR)

_EXIFREAD_CALLS = 20_000  # reads + seeks; a sound file needs a few hundred
_XMP_TAG = 700

_IFD0_TAGS = {
    0x010F: "Make",
    0x0110: "Model",
    0x0132: "DateTime",
    0x9003: "DateTimeOriginal",
    0x9004: "DateTimeDigitized",
}
_EXIF_TAGS = {
    0x9003: "DateTimeOriginal",
    0x9004: "DateTimeDigitized",
    0x9010: "OffsetTime",
    0x9011: "OffsetTimeOriginal",
    0x9012: "OffsetTimeDigitized",
    0x9290: "SubSecTime",
    0x9291: "SubSecTimeOriginal",
    0x9292: "SubSecTimeDigitized",
}
_EXIF_IFD_POINTER = 0x8769
_TAG_NAMES = frozenset(_IFD0_TAGS.values()) | frozenset(_EXIF_TAGS.values())
# (date tag, sub-second tag, offset tag). DateTimeOriginal pairs with
# OffsetTimeOriginal, never with OffsetTime (which belongs to DateTime).
CAPTURE_TAGS = (
    ("DateTimeOriginal", "SubSecTimeOriginal", "OffsetTimeOriginal"),
    ("DateTimeDigitized", "SubSecTimeDigitized", "OffsetTimeDigitized"),
)
MODIFIED_TAGS = (("DateTime", "SubSecTime", "OffsetTime"),)


@dataclass
class ExifTags:
    """The text tags found (by name) and where IFD0's XMP packet is, if any."""

    text: dict[str, str] = field(default_factory=dict)
    xmp: Range | None = None

    def dates(self, which: tuple[tuple[str, str, str], ...]) -> Iterator[CaptureDate]:
        """The dates of the `which` tags, each parsed only when asked for."""
        for date_tag, subsec_tag, offset_tag in which:
            parsed = parse_datetime(
                self.text.get(date_tag),
                self.text.get(subsec_tag),
                self.text.get(offset_tag),
            )
            if parsed is not None:
                yield CaptureDate(parsed[0], "exif", parsed[1])


def read_exif(reader: Reader, kind: str, path: StrPath) -> ExifTags:
    """The EXIF tags of an image; the general parser when the fast one fails."""
    try:
        return _fast_exif_tags(reader, kind)
    except Exception as exc:  # noqa: BLE001 - fall back to the general parser
        debug(path, "fast EXIF path failed ({}: {}), trying exifread", kind, exc)
        with open(reader.fd, "rb", closefd=False) as fh:
            return ExifTags(_exifread_tags(_BudgetFile(fh)))


def _fast_exif_tags(reader: Reader, kind: str) -> ExifTags:
    window = TIFF_LOCATORS[kind](reader)
    return ExifTags() if window is None else tiff_tags(window)


class _BudgetFile:
    """A file for exifread with a budget: it walks corrupt IFDs entry by entry
    (a 65535-entry IFD costs it a second), so calls and read sizes are capped."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._calls = 0

    def _spend(self) -> None:
        self._calls += 1
        if self._calls > _EXIFREAD_CALLS:
            raise Corrupt("exifread call budget exhausted")

    def read(self, size: int | None = -1) -> bytes:
        self._spend()
        if size is None or size < 0 or size > MAX_READ:
            size = MAX_READ
        return self._fh.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._spend()
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _exifread_tags(fh: _BudgetFile) -> dict[str, str]:
    """The general (slower) path: exifread, reduced to the tags we use."""
    raw = exifread.process_file(
        cast(BinaryIO, fh),
        stop_tag="SubSecTimeDigitized",
        details=False,
        extract_thumbnail=False,
    )
    tags: dict[str, str] = {}
    for key, value in raw.items():
        ifd, _, name = key.partition(" ")
        if name not in _TAG_NAMES or ifd not in ("Image", "EXIF"):
            continue
        if ifd == "EXIF" or name not in tags:
            tags[name] = str(getattr(value, "values", value)).strip("\x00 ")
    return tags


@dataclass(frozen=True)
class _Structs:
    u16: struct.Struct
    u32: struct.Struct
    entry: struct.Struct  # tag, field type, count, 4-byte value or offset


_LITTLE = _Structs(struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<HHI4s"))
_BIG = _Structs(struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">HHI4s"))
_TEXT_TYPES = frozenset({1, 2, 7})  # BYTE, ASCII, UNDEFINED


def tiff_tags(win: Window) -> ExifTags:
    """Read the wanted text tags from IFD0 and the EXIF IFD of a TIFF block."""
    head = win.read(0, 8)
    if head[:2] == b"II":
        structs = _LITTLE
    elif head[:2] == b"MM":
        structs = _BIG
    else:
        raise Corrupt("no TIFF byte-order mark")
    tags = ExifTags()
    ifd0 = structs.u32.unpack(head[4:8])[0]
    exif_ifd = _scan_ifd(win, structs, ifd0, _IFD0_TAGS, tags)
    if exif_ifd is not None:  # its values win over IFD0's
        _scan_ifd(win, structs, exif_ifd, _EXIF_TAGS, tags)
    return tags


def _scan_ifd(
    win: Window,
    structs: _Structs,
    offset: int,
    wanted: dict[int, str],
    tags: ExifTags,
) -> int | None:
    """Store the wanted text tags of one IFD in `tags`; return the EXIF pointer."""
    (count,) = structs.u16.unpack(win.read(offset, 2))
    if count > MAX_IFD_ENTRIES:
        raise Corrupt(f"IFD claims {count} entries")
    pointer = None
    entries = structs.entry.iter_unpack(win.read(offset + 2, 12 * count))
    for tag, kind, n, value in entries:
        if tag == _EXIF_IFD_POINTER:
            pointer = _pointer_value(structs, kind, value)
            continue
        if tag == _XMP_TAG and wanted is _IFD0_TAGS and kind in _TEXT_TYPES and n > 4:
            start = win.base + structs.u32.unpack(value)[0]
            tags.xmp = (start, start + n)
            continue
        name = wanted.get(tag)
        if name is None or kind not in _TEXT_TYPES:
            continue
        if n <= 4:
            data = value[:n]
        else:
            try:
                data = win.read(structs.u32.unpack(value)[0], min(n, MAX_TEXT))
            except Corrupt:
                continue  # one bad value must not cost the others
        text = data.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
        if text:
            tags.text[name] = text
    return pointer


def _pointer_value(structs: _Structs, kind: int, value: bytes) -> int:
    if kind == 3:  # SHORT
        return int(structs.u16.unpack(value[:2])[0])
    return int(structs.u32.unpack(value)[0])
