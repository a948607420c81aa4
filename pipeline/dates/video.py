"""QuickTime/MP4: Apple's creationdate key, then the movie header's UTC time."""

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from pipeline.dates.containers import Range, boxes, children, find_box, payload
from pipeline.dates.reader import MAX_IFD_ENTRIES, MAX_TEXT, Reader
from pipeline.dates.values import CaptureDate, Corrupt, parse_datetime, to_local

_QT_EPOCH = datetime(1904, 1, 1, tzinfo=UTC)
_QT_CREATIONDATE = "com.apple.quicktime.creationdate"
_QT_MAKE = "com.apple.quicktime.make"
_QT_MODEL = "com.apple.quicktime.model"
_QT_KEYS = frozenset({_QT_CREATIONDATE, _QT_MAKE, _QT_MODEL})
_META_CHILDREN = frozenset({b"hdlr", b"keys", b"ilst"})


@dataclass(frozen=True)
class VideoMeta:
    """Dates (best first) and camera from a movie's moov box."""

    dates: tuple[CaptureDate, ...] = ()
    make: str | None = None
    model: str | None = None


def read_video(reader: Reader, tz: tzinfo | None) -> VideoMeta:
    """Dates from moov: Apple's creationdate key first, then mvhd (UTC)."""
    moov = find_box(reader, b"moov", 0, reader.size)
    if moov is None:
        return VideoMeta()
    parts = children(reader, moov, {b"mvhd", b"meta"})
    keys = _quicktime_keys(reader, parts[b"meta"]) if b"meta" in parts else {}
    dates: list[CaptureDate] = []
    # The key carries the wall-clock time and offset where the video was shot,
    # like EXIF, so it files next to the photos taken at the same moment.
    parsed = parse_datetime(keys.get(_QT_CREATIONDATE))
    if parsed is not None:
        dates.append(CaptureDate(parsed[0], "video", parsed[1]))
    if b"mvhd" in parts:
        created = _mvhd_created(reader, parts[b"mvhd"])
        if created is not None:
            when, offset = to_local(created, tz)
            dates.append(CaptureDate(when, "video", offset))
    return VideoMeta(tuple(dates), keys.get(_QT_MAKE), keys.get(_QT_MODEL))


def _mvhd_created(reader: Reader, mvhd: Range) -> datetime | None:
    """mvhd creation_time (UTC seconds since 1904); None when 0 (unknown)."""
    data = reader.read_at(mvhd[0], min(mvhd[1] - mvhd[0], 12))
    if len(data) < 8 or (data[0] == 1 and len(data) < 12):
        raise Corrupt("mvhd too short")
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


def _quicktime_keys(reader: Reader, meta: Range) -> dict[str, str]:
    """Wanted com.apple.quicktime.* values from moov/meta keys + ilst."""
    start, end = meta
    peek = reader.read_at(start, min(end - start, 12))
    # QuickTime's meta is a plain box, ISO's a full box with 4 version bytes.
    if peek[4:8] not in _META_CHILDREN and peek[8:12] in _META_CHILDREN:
        start += 4
    parts = children(reader, (start, end), {b"keys", b"ilst"})
    if b"keys" not in parts or b"ilst" not in parts:
        return {}
    names = _key_names(payload(reader, parts[b"keys"]))
    wanted = {i: name for i, name in enumerate(names, 1) if name in _QT_KEYS}
    values: dict[str, str] = {}
    for kind, item_start, item_end in boxes(reader, *parts[b"ilst"]):
        name = wanted.get(int.from_bytes(kind, "big"))
        if name is None:
            continue
        data = find_box(reader, b"data", item_start, item_end)
        if data is None or data[1] - data[0] <= 8:
            continue
        value = reader.read_at(data[0], min(data[1] - data[0], 8 + MAX_TEXT))
        if int.from_bytes(value[1:4], "big") == 1:  # UTF-8 text
            values[name] = value[8:].decode("utf-8", "replace").strip("\x00 ")
    return values


def _key_names(keys: bytes) -> list[str]:
    names: list[str] = []
    if len(keys) < 8:
        return names
    (count,) = struct.unpack(">I", keys[4:8])
    pos = 8
    for _ in range(min(count, MAX_IFD_ENTRIES)):
        if pos + 8 > len(keys):
            break
        (size,) = struct.unpack(">I", keys[pos : pos + 4])
        if size < 8 or pos + size > len(keys):
            break
        names.append(keys[pos + 8 : pos + size].decode("utf-8", "replace"))
        pos += size
    return names
