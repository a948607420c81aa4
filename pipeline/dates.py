"""Capture date of a photo or video, and the camera that took it.

Sources, first valid wins: embedded EXIF (JPEG, TIFF and TIFF-based RAW, PNG
`eXIf`, WebP, HEIC/HEIF), QuickTime/MP4 creation time, a date in the file name,
then the file's own mtime. Metadata is found by content, not by extension, and
is read with small bounded reads (never the whole file): a hand-written TIFF
walker for the few tags needed, with exifread as the fallback when the fast
path cannot parse a file. Corrupt metadata never raises; it falls through to the
next source.
"""

import logging
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import BinaryIO, Literal, cast

import exifread
from loguru import logger

CaptureSource = Literal["exif", "video", "filename", "mtime"]
StrPath = str | os.PathLike[str]

# exifread warns through stdlib logging on every file without EXIF; at daemon
# scale that is noise, and a failed read is reported here at debug instead.
logging.getLogger("exifread").setLevel(logging.ERROR)

_EARLIEST = datetime(1970, 1, 1)
_FUTURE_SLACK = timedelta(days=1)
_HEAD_BYTES = 8 * 1024  # one read covers the tags of nearly every file
_MAX_READ = 1024 * 1024  # no single metadata read is allowed to be larger
_MAX_TEXT = 256
_MAX_SEGMENTS = 512
_MAX_BOXES = 4096
_MAX_IFD_ENTRIES = 1024
_EXIFREAD_CALLS = 20_000  # reads + seeks; a sound file needs a few hundred
_QT_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class CaptureDate:
    """When a photo or video was taken, and which source said so.

    `when` is the naive local wall-clock time used for the YYYY/MM/DD folder:
    EXIF and file-name times as written, video UTC times converted to the
    requested zone. `utc_offset` is known for EXIF with an OffsetTime tag,
    videos and mtime; None otherwise.
    """

    when: datetime
    source: str  # "exif" | "video" | "filename" | "mtime"
    utc_offset: timedelta | None = None


@dataclass(frozen=True)
class _Embedded:
    """Metadata found inside a file, not yet validated."""

    exif: dict[str, str] = field(default_factory=dict)  # EXIF text tags by name
    video: tuple[CaptureDate, ...] = ()
    make: str | None = None
    model: str | None = None

    def dates(self) -> Iterator[CaptureDate]:
        """Candidate dates, best first, each parsed only when asked for."""
        yield from self.video
        for date_tag, subsec_tag, offset_tag in _EXIF_DATE_TAGS:
            parsed = _parse_datetime(
                self.exif.get(date_tag),
                self.exif.get(subsec_tag),
                self.exif.get(offset_tag),
            )
            if parsed is not None:
                yield CaptureDate(parsed[0], "exif", parsed[1])

    @property
    def camera(self) -> str | None:
        return _camera_name(self.make, self.model)


_NOTHING = _Embedded()


class _Corrupt(Exception):
    """The metadata structure is malformed or truncated."""


# --------------------------------------------------------------------------- API


def capture_date(
    path: StrPath, tz: tzinfo | None = None, now: datetime | None = None
) -> CaptureDate:
    """Return the capture date of `path`: EXIF, video, file name, then mtime.

    `tz` is the zone that UTC video times and mtimes are shown in (None: the
    system's zone). A date before 1970 or more than a day after `now` (default:
    the current time) is skipped. Never raises for bad metadata; raises OSError
    only when `path` cannot be lstat'ed. When even the mtime is out of range it
    is still returned (source "mtime"): the last resort is the file's own word.
    """
    return _capture(path, tz, now)[0]


def camera_model(path: StrPath) -> str | None:
    """Return the camera's make and model as a safe folder name, or None.

    From EXIF Make/Model (or Apple's QuickTime make/model keys), e.g.
    "Apple iPhone 12 Pro", "Canon EOS R5" (make not repeated). Contains no
    path separators, control characters or leading dots; at most 64 chars.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return _read_embedded(path, st, None).camera


def capture_info(
    path: StrPath, tz: tzinfo | None = None, now: datetime | None = None
) -> tuple[CaptureDate, str | None]:
    """Return `(capture_date(path), camera_model(path))` reading the file once."""
    found, embedded = _capture(path, tz, now)
    return found, embedded.camera


def _capture(
    path: StrPath, tz: tzinfo | None, now: datetime | None
) -> tuple[CaptureDate, _Embedded]:
    st = os.lstat(path)
    local_now = _local_now(now, tz)
    embedded = _read_embedded(path, st, tz)
    for found in embedded.dates():
        if _is_valid(found.when, local_now):
            return found, embedded
    named = _date_from_name(os.path.basename(path), tz, local_now)
    if named is not None:
        return named, embedded
    return _date_from_mtime(st.st_mtime, tz, local_now), embedded


# ---------------------------------------------------------------- validation


def _local_now(now: datetime | None, tz: tzinfo | None) -> datetime:
    if now is None:
        return datetime.now(tz).replace(tzinfo=None)
    if now.tzinfo is None:
        return now
    return now.astimezone(tz).replace(tzinfo=None)


def _is_valid(when: datetime, local_now: datetime) -> bool:
    return _EARLIEST <= when <= local_now + _FUTURE_SLACK


def _to_local(
    instant: datetime, tz: tzinfo | None
) -> tuple[datetime, timedelta | None]:
    local = instant.astimezone(tz)
    return local.replace(tzinfo=None), local.utcoffset()


def _date_from_mtime(
    mtime: float, tz: tzinfo | None, local_now: datetime
) -> CaptureDate:
    try:
        when, offset = _to_local(datetime.fromtimestamp(mtime, UTC), tz)
    except (OverflowError, OSError, ValueError):
        return CaptureDate(local_now, "mtime")
    return CaptureDate(when, "mtime", offset)


# ------------------------------------------------------------- value parsing

_EXIF_DATETIME = re.compile(
    r"\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_OFFSET = re.compile(r"\s*(?:(Z)|([+-])(\d{2}):?(\d{2}))\s*$")
_MAX_OFFSET = timedelta(hours=14)


def _parse_offset(text: str | None) -> timedelta | None:
    if not text:
        return None
    match = _OFFSET.match(text)
    if match is None:
        return None
    if match[1]:
        return timedelta(0)
    offset = timedelta(hours=int(match[3]), minutes=int(match[4]))
    if match[2] == "-":
        offset = -offset
    return offset if abs(offset) <= _MAX_OFFSET and int(match[4]) < 60 else None


def _micros(fraction: str | None) -> int:
    if not fraction:
        return 0
    digits = fraction.strip()
    if not (digits.isascii() and digits.isdigit()):
        return 0
    return int(digits[:6].ljust(6, "0"))


def _parse_datetime(
    text: str | None, subsec: str | None = None, offset: str | None = None
) -> tuple[datetime, timedelta | None] | None:
    """Parse an EXIF/ISO date; None when blank, malformed or impossible."""
    if not text:
        return None
    if len(text) == 19 and text[4] == text[7] == ":" and text[13] == text[16] == ":":
        fraction, inline_offset = subsec, None  # the usual EXIF form, no regex
        fields = (
            text[0:4],
            text[5:7],
            text[8:10],
            text[11:13],
            text[14:16],
            text[17:19],
        )
    else:
        match = _EXIF_DATETIME.match(text)
        if match is None:
            return None
        fraction, inline_offset = match[7] or subsec, match[8]
        fields = tuple(g or "0" for g in match.groups()[:6])
    try:
        when = datetime(*map(int, fields), _micros(fraction))
    except ValueError:
        return None
    return when, _parse_offset(offset if offset is not None else inline_offset)


# ------------------------------------------------------------------ file access


class _Reader:
    """Bounded random access to an open file; the first bytes come from memory."""

    __slots__ = ("fd", "size", "head")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.head = os.pread(fd, _HEAD_BYTES, 0)

    def read_at(self, pos: int, length: int) -> bytes:
        """Return exactly `length` bytes at `pos`, or raise _Corrupt."""
        end = pos + length
        if 0 <= pos <= end <= len(self.head):
            return self.head[pos:end]
        if pos < 0 or length < 0 or length > _MAX_READ or end > self.size:
            raise _Corrupt(f"read of {length} bytes at {pos} outside the file")
        data = os.pread(self.fd, length, pos)
        if len(data) != length:
            raise _Corrupt(f"file shorter than expected at {pos}")
        return data


class _Window:
    """A slice of a file (e.g. a TIFF block) addressed from its own start."""

    __slots__ = ("reader", "base", "limit", "cached")

    def __init__(self, reader: _Reader, base: int, limit: int) -> None:
        if base < 0 or limit < 0:
            raise _Corrupt(f"metadata block at {base} of {limit} bytes")
        self.reader = reader
        self.base = base
        self.limit = limit
        self.cached = reader.head[base : base + limit]

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if 0 <= offset <= end <= len(self.cached):
            return self.cached[offset:end]
        if offset < 0 or length < 0 or end > self.limit:
            raise _Corrupt(f"offset {offset} outside the metadata block")
        return self.reader.read_at(self.base + offset, length)


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _read_embedded(path: StrPath, st: os.stat_result, tz: tzinfo | None) -> _Embedded:
    """Read dates and camera from inside a regular file; empty on any failure."""
    if not stat.S_ISREG(st.st_mode):
        return _NOTHING
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        _debug(path, "cannot open for metadata: {}", exc)
        return _NOTHING
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced since the lstat
            return _NOTHING
        reader = _Reader(fd, opened.st_size)
        kind = _sniff(reader.head)
        if kind == "video":
            return _video_embedded(reader, tz)
        if kind is not None:
            return _exif_embedded(reader, kind, path)
    except Exception as exc:  # noqa: BLE001 - any failure means "no metadata"
        _debug(path, "embedded metadata unreadable: {}: {}", type(exc).__name__, exc)
    finally:
        os.close(fd)
    return _NOTHING


def _debug(path: StrPath, message: str, *args: object) -> None:
    logger.bind(event="capture_date", path=str(path)).debug(message, *args)


_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
    | {b"avif", b"avis", b"mif2"}
)
_QT_TOP_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def _sniff(head: bytes) -> str | None:
    """Name the container from its first bytes: jpeg, tiff, png, ..., video."""
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"IIU\x00"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "heif" if head[8:12] in _HEIF_BRANDS else "video"
    if head[4:8] in _QT_TOP_BOXES:
        return "video"
    return None


# ------------------------------------------------------------------------ EXIF

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
# (date tag, sub-second tag, offset tag), best first. DateTimeOriginal pairs
# with OffsetTimeOriginal, never with OffsetTime (which belongs to DateTime).
_EXIF_DATE_TAGS = (
    ("DateTimeOriginal", "SubSecTimeOriginal", "OffsetTimeOriginal"),
    ("DateTimeDigitized", "SubSecTimeDigitized", "OffsetTimeDigitized"),
    ("DateTime", "SubSecTime", "OffsetTime"),
)


def _exif_embedded(reader: _Reader, kind: str, path: StrPath) -> _Embedded:
    try:
        tags = _fast_exif_tags(reader, kind)
    except Exception as exc:  # noqa: BLE001 - fall back to the general parser
        _debug(path, "fast EXIF path failed ({}: {}), trying exifread", kind, exc)
        with open(reader.fd, "rb", closefd=False) as fh:
            tags = _exifread_tags(_BudgetFile(fh))
    return _Embedded(exif=tags, make=tags.get("Make"), model=tags.get("Model"))


def _fast_exif_tags(reader: _Reader, kind: str) -> dict[str, str]:
    locate = _TIFF_LOCATORS[kind]
    window = locate(reader)
    return {} if window is None else _tiff_tags(window)


class _BudgetFile:
    """A file for exifread with a budget: it walks corrupt IFDs entry by entry
    (a 65535-entry IFD costs it a second), so calls and read sizes are capped."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._calls = 0

    def _spend(self) -> None:
        self._calls += 1
        if self._calls > _EXIFREAD_CALLS:
            raise _Corrupt("exifread call budget exhausted")

    def read(self, size: int | None = -1) -> bytes:
        self._spend()
        if size is None or size < 0 or size > _MAX_READ:
            size = _MAX_READ
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


def _tiff_tags(win: _Window) -> dict[str, str]:
    """Read the wanted text tags from IFD0 and the EXIF IFD of a TIFF block."""
    head = win.read(0, 8)
    if head[:2] == b"II":
        structs = _LITTLE
    elif head[:2] == b"MM":
        structs = _BIG
    else:
        raise _Corrupt("no TIFF byte-order mark")
    tags: dict[str, str] = {}
    ifd0 = structs.u32.unpack(head[4:8])[0]
    exif_ifd = _scan_ifd(win, structs, ifd0, _IFD0_TAGS, tags)
    if exif_ifd is not None:  # its values win over IFD0's
        _scan_ifd(win, structs, exif_ifd, _EXIF_TAGS, tags)
    return tags


@dataclass(frozen=True)
class _Structs:
    u16: struct.Struct
    u32: struct.Struct
    entry: struct.Struct  # tag, field type, count, 4-byte value or offset


_LITTLE = _Structs(struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<HHI4s"))
_BIG = _Structs(struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">HHI4s"))
_TEXT_TYPES = frozenset({1, 2, 7})  # BYTE, ASCII, UNDEFINED


def _scan_ifd(
    win: _Window,
    structs: _Structs,
    offset: int,
    wanted: dict[int, str],
    tags: dict[str, str],
) -> int | None:
    """Store the wanted text tags of one IFD in `tags`; return the EXIF pointer."""
    (count,) = structs.u16.unpack(win.read(offset, 2))
    if count > _MAX_IFD_ENTRIES:
        raise _Corrupt(f"IFD claims {count} entries")
    pointer = None
    entries = structs.entry.iter_unpack(win.read(offset + 2, 12 * count))
    for tag, kind, n, value in entries:
        if tag == _EXIF_IFD_POINTER:
            pointer = _pointer_value(structs, kind, value)
            continue
        name = wanted.get(tag)
        if name is None or kind not in _TEXT_TYPES:
            continue
        if n <= 4:
            data = value[:n]
        else:
            try:
                data = win.read(structs.u32.unpack(value)[0], min(n, _MAX_TEXT))
            except _Corrupt:
                continue  # one bad value must not cost the others
        text = data.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
        if text:
            tags[name] = text
    return pointer


def _pointer_value(structs: _Structs, kind: int, value: bytes) -> int:
    if kind == 3:  # SHORT
        return int(structs.u16.unpack(value[:2])[0])
    return int(structs.u32.unpack(value)[0])


def _tiff_file(reader: _Reader) -> _Window:
    return _Window(reader, 0, reader.size)


def _jpeg_tiff(reader: _Reader) -> _Window | None:
    """Find the EXIF APP1 segment before the image data."""
    pos = 2
    for _ in range(_MAX_SEGMENTS):
        header = reader.read_at(pos, 4)
        if header[0] != 0xFF:
            raise _Corrupt(f"no JPEG marker at {pos}")
        marker = header[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan
            return None
        (length,) = struct.unpack(">H", header[2:4])
        if length < 2:
            raise _Corrupt(f"JPEG segment length {length}")
        if marker == 0xE1 and length > 8 and reader.read_at(pos + 4, 4) == b"Exif":
            return _Window(reader, pos + 10, length - 8)
        pos += 2 + length
    return None


def _exif_payload(reader: _Reader, start: int, length: int) -> _Window:
    """An EXIF chunk: a TIFF block, sometimes wrongly prefixed with Exif\\0\\0."""
    skip = 6 if reader.read_at(start, min(6, length)) == b"Exif\x00\x00" else 0
    return _Window(reader, start + skip, length - skip)


def _png_tiff(reader: _Reader) -> _Window | None:
    pos = 8
    for _ in range(_MAX_BOXES * 16):  # IDAT may be split into many chunks
        if pos + 8 > reader.size:
            return None
        length, kind = struct.unpack(">I4s", reader.read_at(pos, 8))
        if kind == b"eXIf":
            return _exif_payload(reader, pos + 8, length)
        if kind == b"IEND":
            return None
        pos += 12 + length
    return None


def _webp_tiff(reader: _Reader) -> _Window | None:
    pos = 12
    for _ in range(_MAX_BOXES):
        if pos + 8 > reader.size:
            return None
        kind, length = struct.unpack("<4sI", reader.read_at(pos, 8))
        if kind == b"EXIF":
            return _exif_payload(reader, pos + 8, length)
        pos += 8 + length + (length & 1)
    return None


# ------------------------------------------------------------- ISO-BMFF boxes

_Range = tuple[int, int]


def _boxes(reader: _Reader, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, payload end) of the boxes in [start, end).

    Bounded: at most _MAX_BOXES boxes, never past `end`; a size smaller than
    its own header raises _Corrupt (it would otherwise loop).
    """
    pos = start
    end = min(end, reader.size)
    for _ in range(_MAX_BOXES):
        if pos + 8 > end:
            return
        size, kind = struct.unpack(">I4s", reader.read_at(pos, 8))
        header = 8
        if size == 1:  # 64-bit size follows the type
            if pos + 16 > end:
                return
            (size,) = struct.unpack(">Q", reader.read_at(pos + 8, 8))
            header = 16
        elif size == 0:  # extends to the end of the file
            size = end - pos
        if size < header:
            raise _Corrupt(f"box {kind!r} at {pos} has size {size}")
        yield kind, pos + header, min(pos + size, end)
        pos += size


def _find_box(reader: _Reader, kind: bytes, start: int, end: int) -> _Range | None:
    for found, payload_start, payload_end in _boxes(reader, start, end):
        if found == kind:
            return payload_start, payload_end
    return None


def _children(reader: _Reader, box: _Range, kinds: set[bytes]) -> dict[bytes, _Range]:
    """First child box of each wanted kind."""
    found: dict[bytes, _Range] = {}
    for kind, start, end in _boxes(reader, *box):
        if kind in kinds and kind not in found:
            found[kind] = (start, end)
    return found


class _Cursor:
    """Sequential big-endian reads over an in-memory box payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> int:
        if size == 0:
            return 0
        if not 0 < size <= 8 or self.pos + size > len(self.data):
            raise _Corrupt(f"cannot read {size} bytes at {self.pos}")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value


def _payload(reader: _Reader, box: _Range) -> bytes:
    return reader.read_at(box[0], min(box[1] - box[0], _MAX_READ))


def _heif_tiff(reader: _Reader) -> _Window | None:
    """Locate the Exif item of a HEIF/AVIF image through meta/iinf and iloc."""
    meta = _find_box(reader, b"meta", 0, reader.size)
    if meta is None:
        return None
    parts = _children(reader, (meta[0] + 4, meta[1]), {b"iinf", b"iloc", b"idat"})
    if b"iinf" not in parts or b"iloc" not in parts:
        return None
    item_id = _heif_exif_item(reader, parts[b"iinf"])
    if item_id is None:
        return None
    method, offset, length = _heif_item_extent(
        _payload(reader, parts[b"iloc"]), item_id
    )
    if method == 1:  # offset into the idat box
        if b"idat" not in parts:
            raise _Corrupt("Exif item in a missing idat box")
        offset += parts[b"idat"][0]
    elif method != 0:
        raise _Corrupt(f"iloc construction method {method}")
    (tiff_offset,) = struct.unpack(">I", reader.read_at(offset, 4))
    start = offset + 4 + tiff_offset
    return _Window(reader, start, length - 4 - tiff_offset)


def _heif_exif_item(reader: _Reader, iinf: _Range) -> int | None:
    version = reader.read_at(iinf[0], 1)[0]
    entries = iinf[0] + (6 if version == 0 else 8)
    for kind, start, end in _boxes(reader, entries, iinf[1]):
        if kind != b"infe" or end - start < 12:
            continue
        cur = _Cursor(reader.read_at(start, min(end - start, 16)))
        infe_version = cur.take(1)
        cur.take(3)
        if infe_version < 2:
            continue
        item_id = cur.take(2 if infe_version == 2 else 4)
        cur.take(2)  # protection index
        if cur.data[cur.pos : cur.pos + 4] == b"Exif":
            return item_id
    return None


def _heif_item_extent(iloc: bytes, item_id: int) -> tuple[int, int, int]:
    """(construction method, offset, length) of a single-extent item."""
    cur = _Cursor(iloc)
    version = cur.take(1)
    cur.take(3)
    sizes = cur.take(1)
    offset_size, length_size = sizes >> 4, sizes & 0x0F
    sizes = cur.take(1)
    base_size, index_size = sizes >> 4, (sizes & 0x0F if version in (1, 2) else 0)
    count = cur.take(2 if version < 2 else 4)
    for _ in range(count):
        current = cur.take(2 if version < 2 else 4)
        method = cur.take(2) & 0x0F if version in (1, 2) else 0
        cur.take(2)  # data reference index
        base = cur.take(base_size)
        extents = [
            (cur.take(index_size), cur.take(offset_size), cur.take(length_size))
            for _ in range(cur.take(2))
        ]
        if current == item_id:
            if len(extents) != 1:
                raise _Corrupt(f"Exif item in {len(extents)} extents")
            return method, base + extents[0][1], extents[0][2]
    raise _Corrupt(f"item {item_id} not in iloc")


_TIFF_LOCATORS = {
    "jpeg": _jpeg_tiff,
    "tiff": _tiff_file,
    "png": _png_tiff,
    "webp": _webp_tiff,
    "heif": _heif_tiff,
}


# ---------------------------------------------------------------------- video

_QT_CREATIONDATE = "com.apple.quicktime.creationdate"
_QT_MAKE = "com.apple.quicktime.make"
_QT_MODEL = "com.apple.quicktime.model"
_QT_KEYS = frozenset({_QT_CREATIONDATE, _QT_MAKE, _QT_MODEL})
_META_CHILDREN = frozenset({b"hdlr", b"keys", b"ilst"})


def _video_embedded(reader: _Reader, tz: tzinfo | None) -> _Embedded:
    """Dates from moov: Apple's creationdate key first, then mvhd (UTC)."""
    moov = _find_box(reader, b"moov", 0, reader.size)
    if moov is None:
        return _NOTHING
    parts = _children(reader, moov, {b"mvhd", b"meta"})
    keys = _quicktime_keys(reader, parts[b"meta"]) if b"meta" in parts else {}
    dates: list[CaptureDate] = []
    # The key carries the wall-clock time and offset where the video was shot,
    # like EXIF, so it files next to the photos taken at the same moment.
    parsed = _parse_datetime(keys.get(_QT_CREATIONDATE))
    if parsed is not None:
        dates.append(CaptureDate(parsed[0], "video", parsed[1]))
    if b"mvhd" in parts:
        created = _mvhd_created(reader, parts[b"mvhd"])
        if created is not None:
            when, offset = _to_local(created, tz)
            dates.append(CaptureDate(when, "video", offset))
    return _Embedded(
        video=tuple(dates), make=keys.get(_QT_MAKE), model=keys.get(_QT_MODEL)
    )


def _mvhd_created(reader: _Reader, mvhd: _Range) -> datetime | None:
    """mvhd creation_time (UTC seconds since 1904); None when 0 (unknown)."""
    data = reader.read_at(mvhd[0], min(mvhd[1] - mvhd[0], 12))
    if len(data) < 8 or (data[0] == 1 and len(data) < 12):
        raise _Corrupt("mvhd too short")
    if data[0] == 1:
        (seconds,) = struct.unpack(">Q", data[4:12])
    else:
        (seconds,) = struct.unpack(">I", data[4:8])
    if seconds == 0:
        return None
    try:
        return _QT_EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def _quicktime_keys(reader: _Reader, meta: _Range) -> dict[str, str]:
    """Wanted com.apple.quicktime.* values from moov/meta keys + ilst."""
    start, end = meta
    peek = reader.read_at(start, min(end - start, 12))
    # QuickTime's meta is a plain box, ISO's a full box with 4 version bytes.
    if peek[4:8] not in _META_CHILDREN and peek[8:12] in _META_CHILDREN:
        start += 4
    parts = _children(reader, (start, end), {b"keys", b"ilst"})
    if b"keys" not in parts or b"ilst" not in parts:
        return {}
    names = _key_names(_payload(reader, parts[b"keys"]))
    wanted = {i: name for i, name in enumerate(names, 1) if name in _QT_KEYS}
    values: dict[str, str] = {}
    for kind, item_start, item_end in _boxes(reader, *parts[b"ilst"]):
        name = wanted.get(int.from_bytes(kind, "big"))
        if name is None:
            continue
        data = _find_box(reader, b"data", item_start, item_end)
        if data is None or data[1] - data[0] <= 8:
            continue
        payload = reader.read_at(data[0], min(data[1] - data[0], 8 + _MAX_TEXT))
        if int.from_bytes(payload[1:4], "big") == 1:  # UTF-8 text
            values[name] = payload[8:].decode("utf-8", "replace").strip("\x00 ")
    return values


def _key_names(keys: bytes) -> list[str]:
    names: list[str] = []
    if len(keys) < 8:
        return names
    (count,) = struct.unpack(">I", keys[4:8])
    pos = 8
    for _ in range(min(count, _MAX_IFD_ENTRIES)):
        if pos + 8 > len(keys):
            break
        (size,) = struct.unpack(">I", keys[pos : pos + 4])
        if size < 8 or pos + size > len(keys):
            break
        names.append(keys[pos + 8 : pos + size].decode("utf-8", "replace"))
        pos += size
    return names


# ------------------------------------------------------------------- camera

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_MAX_CAMERA = 64


def _camera_name(make: str | None, model: str | None) -> str | None:
    """Join make and model (without repeating the make) as a folder name."""
    make, model = _folder_safe(make), _folder_safe(model)
    if make and model and not model.lower().startswith(make.split()[0].lower()):
        name = f"{make} {model}"
    else:
        name = model or make
    return name[:_MAX_CAMERA].rstrip(" ._") or None


def _folder_safe(text: str | None) -> str:
    return " ".join(_UNSAFE.sub("_", text or "").split()).strip(" ._")


# ----------------------------------------------------------------- file name

_NAME_DATE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d\d)(?P<ds>[-_.]?)(?P<mo>\d\d)(?P=ds)(?P<d>\d\d)"
    r"(?:(?:\s+at\s+|_at_|[ _T.\-])?"
    r"(?P<h>\d\d)(?P<ts>[-_.:]?)(?P<mi>\d\d)(?P=ts)(?P<s>\d\d)"
    r"(?:\.?(?P<frac>\d{1,6}))?(?:\s?(?P<ampm>[AaPp][Mm])(?![A-Za-z]))?)?"
    r"(?!\d)"
)
# Facebook / Messenger downloads: FB_IMG_<milliseconds since the epoch>.
_NAME_EPOCH_MS = re.compile(r"^(?:FB_IMG|received)_(?P<ms>1\d{12})(?!\d)")


def _date_from_name(
    name: str, tz: tzinfo | None, local_now: datetime
) -> CaptureDate | None:
    """First plausible date (and time) written in a file name, as written."""
    epoch = _NAME_EPOCH_MS.match(name)
    if epoch is not None:
        when, offset = _to_local(
            datetime.fromtimestamp(int(epoch["ms"]) / 1000, UTC), tz
        )
        if _is_valid(when, local_now):
            return CaptureDate(when, "filename", offset)
    for match in _NAME_DATE.finditer(name):
        when = _name_match_datetime(match)
        if when is not None and _is_valid(when, local_now):
            return CaptureDate(when, "filename")
    return None


def _name_match_datetime(match: re.Match[str]) -> datetime | None:
    hour = int(match["h"] or 0)
    if match["ampm"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ampm"].lower() == "pm" else 0)
    try:
        return datetime(
            int(match["y"]),
            int(match["mo"]),
            int(match["d"]),
            hour,
            int(match["mi"] or 0),
            int(match["s"] or 0),
            _micros(match["frac"]),
        )
    except ValueError:
        return None
