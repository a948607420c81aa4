"""Dates written in file names, and the camera's name made safe for a folder."""

import re
from datetime import datetime, tzinfo

from pipeline.dates.values import CaptureDate, from_epoch, is_valid, micros

_NAME_DATE = re.compile(
    r"(?<!\d)(?P<y>(?:19|20)\d\d)(?P<ds>[-_.]?)(?P<mo>\d\d)(?P=ds)(?P<d>\d\d)"
    r"(?:(?:\s+at\s+|_at_|[ _T.\-])?"
    r"(?P<h>\d\d)(?P<ts>[-_.:]?)(?P<mi>\d\d)(?P=ts)(?P<s>\d\d)"
    r"(?:\.?(?P<frac>\d{1,6}))?(?:\s?(?P<ampm>[AaPp][Mm])(?![A-Za-z]))?)?"
    r"(?!\d)"
)
# Facebook / Messenger downloads: FB_IMG_<milliseconds since the epoch>.
_NAME_EPOCH_MS = re.compile(r"^(?:FB_IMG|received)_(?P<ms>1\d{12})(?!\d)")


def date_from_name(
    name: str, tz: tzinfo | None, local_now: datetime
) -> CaptureDate | None:
    """First plausible date (and time) written in a file name, as written."""
    epoch = _NAME_EPOCH_MS.match(name)
    if epoch is not None:
        found = from_epoch(int(epoch["ms"]) / 1000, tz, "filename")
        if found is not None and is_valid(found.when, local_now):
            return found
    for match in _NAME_DATE.finditer(name):
        when = _name_match_datetime(match)
        if when is not None and is_valid(when, local_now):
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
            micros(match["frac"]),
        )
    except ValueError:
        return None


_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")
_MAX_CAMERA = 64


def camera_name(make: str | None, model: str | None) -> str | None:
    """Join make and model (without repeating the make) as a folder name."""
    make, model = _folder_safe(make), _folder_safe(model)
    if make and model and not model.lower().startswith(make.split()[0].lower()):
        name = f"{make} {model}"
    else:
        name = model or make
    return name[:_MAX_CAMERA].rstrip(" ._") or None


def _folder_safe(text: str | None) -> str:
    return " ".join(_UNSAFE.sub("_", text or "").split()).strip(" ._")
