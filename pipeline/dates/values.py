"""The capture-date value, how metadata text becomes one, and what counts as valid."""

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal

from loguru import logger

CaptureSource = Literal[
    "exif", "xmp", "makernote", "video", "sidecar", "filename", "mtime"
]
StrPath = str | os.PathLike[str]

_EARLIEST = datetime(1970, 1, 1)
_FUTURE_SLACK = timedelta(days=1)


@dataclass(frozen=True)
class CaptureDate:
    """When a photo or video was taken, and which source said so.

    `when` is the naive local wall-clock time used for the YYYY/MM/DD folder:
    EXIF, XMP and file-name times as written (an offset or `Z` is kept in
    `utc_offset`, never applied), UTC times (video headers, Takeout, mtime)
    converted to the requested zone. `utc_offset` is None when unknown.
    `source` is one of CaptureSource: exif, xmp, makernote, video, sidecar,
    filename, mtime.
    """

    when: datetime
    source: str
    utc_offset: timedelta | None = None


class Corrupt(Exception):
    """The metadata structure is malformed or truncated."""


def debug(path: StrPath, message: str, *args: object) -> None:
    logger.bind(event="capture_date", path=str(path)).debug(message, *args)


# ---------------------------------------------------------------- validation


def local_now(now: datetime | None, tz: tzinfo | None) -> datetime:
    if now is None:
        return datetime.now(tz).replace(tzinfo=None)
    if now.tzinfo is None:
        return now
    return now.astimezone(tz).replace(tzinfo=None)


def is_valid(when: datetime, now: datetime) -> bool:
    """Not before 1970 and at most a day after `now` (both local, naive)."""
    return _EARLIEST <= when <= now + _FUTURE_SLACK


def to_local(instant: datetime, tz: tzinfo | None) -> tuple[datetime, timedelta | None]:
    local = instant.astimezone(tz)
    return local.replace(tzinfo=None), local.utcoffset()


def from_epoch(seconds: float, tz: tzinfo | None, source: str) -> CaptureDate | None:
    """A UTC epoch time shown in `tz`; None when out of range."""
    try:
        when, offset = to_local(datetime.fromtimestamp(seconds, UTC), tz)
    except (OverflowError, OSError, ValueError):
        return None
    return CaptureDate(when, source, offset)


def wall_clock_epoch(seconds: int) -> datetime | None:
    """Seconds since 1970 that a camera counted in its own local time."""
    try:
        return datetime(1970, 1, 1) + timedelta(seconds=seconds)
    except OverflowError:
        return None


# ------------------------------------------------------------- value parsing

_DATETIME = re.compile(
    r"\s*(\d{4})[:\-/.](\d{1,2})[:\-/.](\d{1,2})"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?\s*$"
)
_OFFSET = re.compile(r"\s*(?:(Z)|([+-])(\d{2}):?(\d{2}))\s*$")
_MAX_OFFSET = timedelta(hours=14)


def parse_offset(text: str | None) -> timedelta | None:
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


def micros(fraction: str | None) -> int:
    if not fraction:
        return 0
    digits = fraction.strip()
    if not (digits.isascii() and digits.isdigit()):
        return 0
    return int(digits[:6].ljust(6, "0"))


def parse_datetime(
    text: str | None, subsec: str | None = None, offset: str | None = None
) -> tuple[datetime, timedelta | None] | None:
    """Parse an EXIF/ISO/XMP date; None when blank, malformed or impossible.

    A date without a time is that day at 00:00; an inline offset or `Z` is
    returned beside the wall-clock time as written, never applied to it.
    """
    if not text:
        return None
    if len(text) == 19 and text[4] == text[7] == ":" and text[13] == text[16] == ":":
        fraction, inline_offset = subsec, None  # the usual EXIF form, no regex
        fields: tuple[str, ...] = (
            text[0:4],
            text[5:7],
            text[8:10],
            text[11:13],
            text[14:16],
            text[17:19],
        )
    else:
        match = _DATETIME.match(text)
        if match is None:
            return None
        fraction, inline_offset = match[7] or subsec, match[8]
        fields = tuple(g or "0" for g in match.groups()[:6])
    try:
        year, month, day, hour, minute, second = map(int, fields)
        when = datetime(year, month, day, hour, minute, second, micros(fraction))
    except ValueError:
        return None
    return when, parse_offset(offset if offset is not None else inline_offset)
