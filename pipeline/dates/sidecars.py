"""Dates from the files beside a photo: an XMP sidecar, a Google Takeout JSON.

Looked up by name in the photo's own folder only (lstat, no directory
listing, symlinks not followed), read whole but only when small. Source
"sidecar".

XMP sidecar names: `IMG_1.xmp` (Lightroom, Capture One) and `IMG_1.JPG.xmp`
(darktable, digiKam), either case. Takeout names, for `IMG_1(1).JPG`:
`IMG_1.JPG.supplemental-metadata.json`, `IMG_1.JPG.json`, `IMG_1.json`, the
counter moved behind the extension (`IMG_1.JPG(1).json`), each cut to
Takeout's 51-character limit, and for an edited copy (`IMG_1-edited.JPG`) the
original's. `photoTakenTime.timestamp` is UTC seconds.
"""

import json
import os
from collections.abc import Iterator
from datetime import tzinfo

from pipeline.dates.reader import read_small
from pipeline.dates.values import CaptureDate, StrPath, from_epoch
from pipeline.dates.xmp import MAX_XMP, packet_dates
from pipeline.media import is_sidecar

_MAX_JSON = 256 * 1024
_TAKEOUT_NAME_MAX = 51  # Takeout cuts longer JSON names to this many characters
_TAKEOUT_TAG = ".supplemental-metadata"
# What Google Photos appends to an edited copy's name, by interface language.
_EDITED = ("-edited", "-bearbeitet", "-modifié", "-modificato", "-editado", "-bewerkt")


def sidecar_dates(path: StrPath, tz: tzinfo | None) -> Iterator[CaptureDate]:
    """Candidate dates from the sidecars of `path`, best first (XMP, Takeout)."""
    folder, name = os.path.split(os.fspath(path))
    stem = os.path.splitext(name)[0]
    if not stem or is_sidecar(name):
        return
    for candidate in _xmp_names(stem, name):
        data = read_small(os.path.join(folder, candidate), MAX_XMP)
        if data is not None:
            for found in packet_dates(data):
                yield CaptureDate(found.when, "sidecar", found.utc_offset)
    for candidate in takeout_names(name):
        data = read_small(os.path.join(folder, candidate), _MAX_JSON)
        if data is not None:
            dated = _takeout_date(data, tz)
            if dated is not None:
                yield dated


def _xmp_names(stem: str, name: str) -> list[str]:
    return [f"{stem}.xmp", f"{stem}.XMP", f"{name}.xmp", f"{name}.XMP"]


def takeout_names(name: str) -> list[str]:
    """Names Google Takeout gives the JSON of the media file `name`, best first.

    An edited copy (`IMG_1-edited.jpg`, or the suffix of another language) has no
    JSON of its own: it shares the original's, tried after its own names.
    """
    stem, ext = os.path.splitext(name)
    counter = ""
    if stem.endswith(")") and "(" in stem:
        base, _, number = stem[:-1].rpartition("(")
        if base and number.isdigit():
            stem, counter = base, f"({number})"
    names = _names(stem, ext, counter)
    lowered = stem.lower()
    for suffix in _EDITED:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            names += _names(stem[: -len(suffix)], ext, counter)
            break
    return list(dict.fromkeys(names))


def _names(stem: str, ext: str, counter: str) -> list[str]:
    full = stem + ext
    names: list[str] = []
    for base in (full + _TAKEOUT_TAG, full):
        names.append(f"{base}{counter}.json")
        if len(names[-1]) > _TAKEOUT_NAME_MAX:
            cut = _TAKEOUT_NAME_MAX - len(counter) - len(".json")
            names.append(f"{base[:cut]}{counter}.json")
    names.append(f"{stem}{counter}.json")
    if counter:
        names.append(f"{stem}{counter}{ext}.json")
    return names


def _takeout_date(data: bytes, tz: tzinfo | None) -> CaptureDate | None:
    """photoTakenTime.timestamp (UTC epoch seconds, a string or a number)."""
    try:
        doc = json.loads(data)
        stamp = doc["photoTakenTime"]["timestamp"]
        seconds = int(stamp)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return None
    if seconds <= 0:  # 0 is Takeout's "unknown"
        return None
    return from_epoch(seconds, tz, "sidecar")
