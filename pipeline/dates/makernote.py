"""Older cameras' own records: Canon CIFF and the APP12 "Picture Info" text.

Canon CIFF is the whole of a CRW file and an APP0 segment of early PowerShot
JPEGs; its TimeStamp record (0x180e) holds the capture time as seconds since
1970 counted in the camera's local time. Olympus, Agfa and Polaroid cameras
of the same years wrote an APP12 segment of `key=value` text whose `TimeDate`
is the same kind of number. Both are read only when EXIF and XMP gave no date,
with bounded reads (source "makernote", the time as the camera wrote it).

exifread's maker-note tables (Canon, Nikon, Olympus, Fujifilm, Casio, Apple,
DJI, Sony) decode no capture time: the only time among them, Nikon's
PowerUpTime, is when the camera was switched on, so it is not used.
"""

import re
import struct
from datetime import datetime

from pipeline.dates.containers import jpeg_segments
from pipeline.dates.reader import MAX_IFD_ENTRIES, Reader
from pipeline.dates.values import (
    CaptureDate,
    Corrupt,
    parse_datetime,
    wall_clock_epoch,
)

_CIFF_SIGNATURES = (b"HEAPCCDR", b"HEAPJPGM")
_CIFF_TIMESTAMP = 0x180E
_CIFF_MAX_DEPTH = 4
_CIFF_MAX_ENTRIES = 4 * MAX_IFD_ENTRIES  # over the whole tree
_APP12_READ = 16 * 1024
_TIME_DATE = re.compile(
    rb"(?:^|[\s\x00\]])TimeDate=([\x20-\x7e]{1,32}?)\s*(?:[\r\n\x00]|$)"
)


def crw_dates(reader: Reader) -> list[CaptureDate]:
    """The CIFF TimeStamp of a Canon CRW file."""
    when = _ciff_time(reader, 0, reader.size)
    return [] if when is None else [CaptureDate(when, "makernote")]


def jpeg_dates(reader: Reader) -> list[CaptureDate]:
    """CIFF in APP0 (early PowerShot), then APP12 Picture Info TimeDate."""
    found: list[CaptureDate] = []
    for marker, start, length in jpeg_segments(reader):
        if marker == 0xE0 and length > 14:
            head = reader.read_at(start, 14)
            if head[:2] in (b"II", b"MM") and head[6:14] in _CIFF_SIGNATURES:
                when = _ciff_time(reader, start, length)
                if when is not None:
                    found.insert(0, CaptureDate(when, "makernote"))
        elif marker == 0xEC:
            text = reader.read_at(start, min(length, _APP12_READ))
            when = _picture_info_time(text)
            if when is not None:
                found.append(CaptureDate(when, "makernote"))
    return found


def _picture_info_time(text: bytes) -> datetime | None:
    match = _TIME_DATE.search(text)
    if match is None:
        return None
    value = match[1].decode("ascii").strip()
    if value.isdigit():
        return wall_clock_epoch(int(value))
    parsed = parse_datetime(value)
    return None if parsed is None else parsed[0]


def _ciff_time(reader: Reader, start: int, length: int) -> datetime | None:
    """Walk a CIFF block (header + heap tree) at [start, start + length)."""
    header = reader.read_at(start, 14)
    order = {b"II": "<", b"MM": ">"}.get(header[:2])
    if order is None or header[6:14] not in _CIFF_SIGNATURES:
        raise Corrupt("no CIFF header")
    (header_len,) = struct.unpack(order + "I", header[2:6])
    if not 14 <= header_len < length:
        raise Corrupt(f"CIFF header length {header_len}")
    budget = [_CIFF_MAX_ENTRIES]
    return _heap_time(reader, order, start + header_len, length - header_len, 0, budget)


def _heap_time(
    reader: Reader, order: str, base: int, length: int, depth: int, budget: list[int]
) -> datetime | None:
    """TimeStamp in this heap or its sub-heaps; offsets are relative to `base`."""
    if length < 6:
        raise Corrupt("CIFF heap too small")
    (table,) = struct.unpack(order + "I", reader.read_at(base + length - 4, 4))
    if table + 2 > length - 4:
        raise Corrupt(f"CIFF table at {table} outside its heap")
    (count,) = struct.unpack(order + "H", reader.read_at(base + table, 2))
    budget[0] -= count
    if budget[0] < 0 or table + 2 + 10 * count > length:
        raise Corrupt(f"CIFF table of {count} entries")
    entries = reader.read_at(base + table + 2, 10 * count)
    subheaps = []
    for tag, size, offset in struct.iter_unpack(order + "HII", entries):
        if tag & 0x8000:
            raise Corrupt(f"CIFF tag {tag:#x}")
        in_entry = tag & 0x4000
        kind = (tag >> 8) & 0x38
        if tag & 0x3FFF == _CIFF_TIMESTAMP:
            if in_entry:
                data = struct.pack(order + "II", size, offset)
            elif offset + 4 <= length and size >= 4:
                data = reader.read_at(base + offset, 4)
            else:
                raise Corrupt("CIFF TimeStamp outside its heap")
            (seconds,) = struct.unpack(order + "I", data[:4])
            return wall_clock_epoch(seconds) if seconds else None
        if kind in (0x28, 0x30) and not in_entry:
            if offset + size <= length and size < length:
                subheaps.append((base + offset, size))
    if depth < _CIFF_MAX_DEPTH:
        for sub_base, sub_length in subheaps:
            when = _heap_time(reader, order, sub_base, sub_length, depth + 1, budget)
            if when is not None:
                return when
    return None
