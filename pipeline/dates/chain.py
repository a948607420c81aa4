"""The order in which capture-date sources are asked; the first valid date wins.

Inside the file: EXIF DateTimeOriginal/DateTimeDigitized, XMP, EXIF DateTime
(IFD0, often the time of an edit), then an older camera's own record (Canon
CIFF, APP12 Picture Info); for a video its XMP, then Apple's creationdate key,
then the movie header. Each later source is read only when the earlier ones
gave nothing valid, so a file with a sound EXIF date costs one small read.
Then the file's sidecars (XMP, Google Takeout JSON), a date in its name, and
its mtime. A date before 1970 or more than a day in the future is skipped.
"""

import os
import stat
from collections.abc import Callable, Iterable
from datetime import datetime, tzinfo

from pipeline.dates import makernote, xmp
from pipeline.dates.exif import CAPTURE_TAGS, MODIFIED_TAGS, ExifTags, read_exif
from pipeline.dates.names import camera_name, date_from_name
from pipeline.dates.reader import OPEN_FLAGS, Reader, sniff
from pipeline.dates.sidecars import sidecar_dates
from pipeline.dates.values import (
    CaptureDate,
    StrPath,
    debug,
    from_epoch,
    is_valid,
    local_now,
)
from pipeline.dates.video import VideoMeta, read_video

Step = Callable[[], Iterable[CaptureDate]]


def capture_date(
    path: StrPath, tz: tzinfo | None = None, now: datetime | None = None
) -> CaptureDate:
    """Return the capture date of `path` (see the module docstring for the order).

    `tz` is the zone that UTC times (video headers, Takeout, mtime) are shown
    in (None: the system's zone). A date before 1970 or more than a day after
    `now` (default: the current time) is skipped. Never raises for bad
    metadata; raises OSError only when `path` cannot be lstat'ed. When even the
    mtime is out of range it is still returned (source "mtime"): the last
    resort is the file's own word.
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
    return _embedded(path, st, None, None, camera=True)[1]


def capture_info(
    path: StrPath, tz: tzinfo | None = None, now: datetime | None = None
) -> tuple[CaptureDate, str | None]:
    """Return `(capture_date(path), camera_model(path))` reading the file once."""
    return _capture(path, tz, now, camera=True)


def _capture(
    path: StrPath, tz: tzinfo | None, now: datetime | None, camera: bool = False
) -> tuple[CaptureDate, str | None]:
    st = os.lstat(path)
    today = local_now(now, tz)
    found, name = _embedded(path, st, tz, today, camera)
    if found is None and stat.S_ISREG(st.st_mode):
        found = _first_valid(path, [lambda: sidecar_dates(path, tz)], today)
    if found is None:
        found = date_from_name(os.path.basename(path), tz, today)
    if found is None:
        found = from_epoch(st.st_mtime, tz, "mtime") or CaptureDate(today, "mtime")
    return found, name


def _first_valid(
    path: StrPath, steps: list[Step], today: datetime
) -> CaptureDate | None:
    """The first valid date of the steps, in order; a failing step is skipped."""
    for step in steps:
        try:
            for found in step():
                if is_valid(found.when, today):
                    return found
        except Exception as exc:  # noqa: BLE001 - bad metadata: the next source
            debug(path, "metadata unreadable: {}: {}", type(exc).__name__, exc)
    return None


def _embedded(
    path: StrPath,
    st: os.stat_result,
    tz: tzinfo | None,
    today: datetime | None,
    camera: bool,
) -> tuple[CaptureDate | None, str | None]:
    """(first valid embedded date, camera if asked); no date when `today` is None."""
    if not stat.S_ISREG(st.st_mode):
        return None, None
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as exc:
        debug(path, "cannot open for metadata: {}", exc)
        return None, None
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):  # replaced since the lstat
            return None, None
        reader = Reader(fd, opened.st_size)
        kind = sniff(reader.head)
        if kind is None:
            return None, None
        if kind == "video":
            found, make, model = _video(reader, path, tz, today)
        elif kind == "crw":
            found, make, model = _crw(reader, path, today)
        else:
            found, make, model = _image(reader, kind, path, today)
        return found, camera_name(make, model) if camera else None
    except OSError as exc:
        debug(path, "metadata unreadable: {}", exc)
        return None, None
    finally:
        os.close(fd)


Found = tuple[CaptureDate | None, str | None, str | None]  # date, make, model


def _image(reader: Reader, kind: str, path: StrPath, today: datetime | None) -> Found:
    try:
        tags = read_exif(reader, kind, path)
    except Exception as exc:  # noqa: BLE001 - any failure means "no EXIF"
        debug(path, "EXIF unreadable: {}: {}", type(exc).__name__, exc)
        tags = ExifTags()
    make, model = tags.text.get("Make"), tags.text.get("Model")
    if today is None:
        return None, make, model
    for found in tags.dates(CAPTURE_TAGS):  # nearly every photo stops here
        if is_valid(found.when, today):
            return found, make, model
    steps: list[Step] = [
        lambda: xmp.embedded_dates(reader, kind, tags),
        lambda: tags.dates(MODIFIED_TAGS),
    ]
    if kind == "jpeg":
        steps.append(lambda: makernote.jpeg_dates(reader))
    return _first_valid(path, steps, today), make, model


def _video(
    reader: Reader, path: StrPath, tz: tzinfo | None, today: datetime | None
) -> Found:
    try:
        meta = read_video(reader, tz)
    except Exception as exc:  # noqa: BLE001 - any failure means "no metadata"
        debug(path, "video metadata unreadable: {}: {}", type(exc).__name__, exc)
        meta = VideoMeta()
    if today is None:
        return None, meta.make, meta.model
    steps: list[Step] = [
        lambda: xmp.embedded_dates(reader, "video", ExifTags()),
        lambda: meta.dates,
    ]
    return _first_valid(path, steps, today), meta.make, meta.model


def _crw(reader: Reader, path: StrPath, today: datetime | None) -> Found:
    if today is None:
        return None, None, None
    return _first_valid(path, [lambda: makernote.crw_dates(reader)], today), None, None
