"""Capture dates: each source, its validity rules, and corrupt input."""

import json
import os
import random
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from mediafixtures import (
    Exif,
    box,
    full_box,
    heif_bytes,
    jpeg_bytes,
    large_box,
    make_heic,
    make_jpeg,
    make_mov,
    make_mp4,
    make_plain,
    make_png,
    make_tiff_raw,
    make_webp,
    mp4_bytes,
    mvhd,
    set_mtime,
)

from pipeline.dates import CaptureDate, camera_model, capture_date, capture_info
from pipeline.dates import exif as dates_exif

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2024, 6, 1, 12, 0, 0)
TAKEN = datetime(2023, 4, 12, 10, 30, 0)
MTIME = datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)  # 03:08:09 in New York
MTIME_NY = CaptureDate(datetime(2021, 5, 6, 3, 8, 9), "mtime", timedelta(hours=-4))
PLUS_2 = timedelta(hours=2)

ImageMaker = Callable[..., Path]
IMAGE_MAKERS: dict[str, ImageMaker] = {
    "x.jpg": make_jpeg,
    "x.heic": make_heic,
    "x.dng": make_tiff_raw,
    "x.NEF": make_tiff_raw,
    "x.cr2": make_tiff_raw,
    "x.arw": make_tiff_raw,
    "x.tif": make_tiff_raw,
    "x.png": make_png,
    "x.webp": make_webp,
}


def date_of(path: Path, tz: timezone | ZoneInfo | None = NEW_YORK) -> CaptureDate:
    return capture_date(path, tz=tz, now=NOW)


def with_mtime(path: Path) -> Path:
    return set_mtime(path, MTIME)


# ----------------------------------------------------------------------- EXIF


@pytest.mark.parametrize("name", IMAGE_MAKERS)
def test_exif_in_every_image_container(tmp_path: Path, name: str) -> None:
    path = IMAGE_MAKERS[name](tmp_path / name, TAKEN, offset="+02:00", subsec="45")
    expected = CaptureDate(TAKEN.replace(microsecond=450000), "exif", PLUS_2)
    assert date_of(with_mtime(path)) == expected


@pytest.mark.parametrize(
    ("exif", "expected"),
    [
        pytest.param(Exif(original=TAKEN), CaptureDate(TAKEN, "exif"), id="plain"),
        pytest.param(
            Exif(original=TAKEN, offset_original="+02:00", subsec_original="123"),
            CaptureDate(TAKEN.replace(microsecond=123000), "exif", PLUS_2),
            id="offset-and-subsec",
        ),
        pytest.param(
            Exif(original=TAKEN, offset="-07:00", offset_original="+02:00"),
            CaptureDate(TAKEN, "exif", PLUS_2),
            id="OffsetTimeOriginal-not-OffsetTime",
        ),
        pytest.param(
            Exif(original=TAKEN, offset="-07:00", subsec="9"),
            CaptureDate(TAKEN, "exif"),
            id="OffsetTime-ignored-for-original",
        ),
        pytest.param(
            Exif(original=TAKEN, offset_original="-03:30", little_endian=True),
            CaptureDate(TAKEN, "exif", -timedelta(hours=3, minutes=30)),
            id="little-endian",
        ),
        pytest.param(
            Exif(digitized=TAKEN, modified=datetime(2024, 1, 1)),
            CaptureDate(TAKEN, "exif"),
            id="digitized-fallback",
        ),
        pytest.param(
            Exif(modified=TAKEN, offset="+02:00", subsec="5"),
            CaptureDate(TAKEN.replace(microsecond=500000), "exif", PLUS_2),
            id="datetime-fallback",
        ),
        pytest.param(
            Exif(original="2023:04:12 10:30:00+02:00"),
            CaptureDate(TAKEN, "exif", PLUS_2),
            id="inline-offset",
        ),
        pytest.param(
            Exif(original=TAKEN, offset_original="+99:00"),
            CaptureDate(TAKEN, "exif"),
            id="bad-offset-keeps-date",
        ),
    ],
)
def test_exif_tag_choice(tmp_path: Path, exif: Exif, expected: CaptureDate) -> None:
    path = with_mtime(make_jpeg(tmp_path / "x.jpg", exif=exif))
    assert date_of(path) == expected


INVALID_EXIF = {
    "zeros": "0000:00:00 00:00:00",
    "blank": "    :  :     :  :  ",
    "month-13": "2023:13:01 10:00:00",
    "hour-25": "2023:04:12 25:00:00",
    "day-32": "2023:01:32 10:00:00",
    "1969": "1969:12:31 23:59:59",
    "next-year": "2025:06:01 12:00:00",
    "two-days-ahead": "2024:06:03 12:00:01",
    "garbage": "yesterday",
}


@pytest.mark.parametrize("bad", INVALID_EXIF.values(), ids=INVALID_EXIF.keys())
def test_invalid_exif_dates_fall_through(tmp_path: Path, bad: str) -> None:
    digitized = make_jpeg(
        tmp_path / "a.jpg", exif=Exif(original=bad, digitized=TAKEN, modified=bad)
    )
    assert date_of(digitized) == CaptureDate(TAKEN, "exif")
    modified = make_jpeg(tmp_path / "b.jpg", exif=Exif(original=bad, modified=TAKEN))
    assert date_of(modified) == CaptureDate(TAKEN, "exif")
    to_name = make_jpeg(
        tmp_path / "IMG_20200102_030405.jpg", exif=Exif(original=bad, modified=bad)
    )
    assert date_of(to_name) == CaptureDate(datetime(2020, 1, 2, 3, 4, 5), "filename")
    to_mtime = with_mtime(make_jpeg(tmp_path / "c.jpg", exif=Exif(original=bad)))
    assert date_of(to_mtime) == MTIME_NY


def test_future_limit_is_one_day_after_now(tmp_path: Path) -> None:
    soon = NOW + timedelta(hours=23)
    path = with_mtime(make_jpeg(tmp_path / "x.jpg", soon))
    assert date_of(path) == CaptureDate(soon, "exif")
    aware_now = datetime(2024, 6, 1, 16, 0, tzinfo=UTC)  # 12:00 in New York
    assert capture_date(path, NEW_YORK, aware_now) == CaptureDate(soon, "exif")
    assert capture_date(path, NEW_YORK, aware_now - timedelta(hours=2)) == MTIME_NY


def test_default_now_rejects_next_year(tmp_path: Path) -> None:
    next_year = datetime.now().replace(microsecond=0) + timedelta(days=366)
    path = with_mtime(make_jpeg(tmp_path / "x.jpg", next_year))
    assert capture_date(path, NEW_YORK) == MTIME_NY


def test_exif_found_by_content_not_extension(tmp_path: Path) -> None:
    heic_named_jpg = make_heic(tmp_path / "x.heic", TAKEN).rename(tmp_path / "y.jpg")
    jpeg_without_ext = make_jpeg(tmp_path / "x.jpg", TAKEN).rename(tmp_path / "img")
    assert date_of(heic_named_jpg) == CaptureDate(TAKEN, "exif")
    assert date_of(jpeg_without_ext) == CaptureDate(TAKEN, "exif")


def test_jpeg_exif_after_other_app_segments(tmp_path: Path) -> None:
    data = jpeg_bytes(Exif(original=TAKEN))
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    padding = b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533)
    extra = (
        b"\xff\xe1" + struct.pack(">H", len(xmp) + 2) + xmp + padding * 20 + b"\xff\xff"
    )
    path = tmp_path / "x.jpg"
    path.write_bytes(data[:2] + extra + data[2:])
    assert date_of(path) == CaptureDate(TAKEN, "exif")


# exifread 3.5 cannot read Pillow's WebP EXIF chunk (bare TIFF, it expects an
# Exif\0\0 prefix) nor pillow-heif's HEIC (it ignores iloc base offsets): those
# two rely on the fast path alone.
@pytest.mark.parametrize("name", ["x.jpg", "x.dng", "x.png"])
def test_exifread_fallback_when_fast_path_fails(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = IMAGE_MAKERS[name](tmp_path / name, TAKEN, offset="+02:00", subsec="5")
    expected = CaptureDate(TAKEN.replace(microsecond=500000), "exif", PLUS_2)

    def broken(reader: object, kind: str) -> dict[str, str]:
        raise ValueError("simulated parser failure")

    monkeypatch.setattr(dates_exif, "_fast_exif_tags", broken)
    assert date_of(path) == expected


def test_exif_dates_agree_with_exiftool(tmp_path: Path) -> None:
    for index, (name, make) in enumerate(IMAGE_MAKERS.items()):
        taken = TAKEN + timedelta(days=index, seconds=index)
        make(tmp_path / f"{index}{name}", taken)
    out = subprocess.run(
        ["exiftool", "-j", "-DateTimeOriginal", str(tmp_path)],
        capture_output=True,
        check=True,
        text=True,
    )
    records = json.loads(out.stdout)
    assert len(records) == len(IMAGE_MAKERS)
    for record in records:
        ours = date_of(Path(record["SourceFile"])).when
        assert ours.strftime("%Y:%m:%d %H:%M:%S") == record["DateTimeOriginal"]


# ---------------------------------------------------------------------- video

EVENING_UTC = datetime(2023, 7, 1, 3, 30, tzinfo=UTC)
EVENING_NY = CaptureDate(datetime(2023, 6, 30, 23, 30), "video", timedelta(hours=-4))


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("v.mp4", {}),
        ("v.mp4", {"mvhd_version": 1}),
        ("v.mp4", {"moov_last": True, "large_mdat": True}),
        ("v.MOV", {"brand": b"qt  "}),
        ("v.m4v", {"brand": b"M4V "}),
        ("v.3gp", {"brand": b"3gp5"}),
    ],
)
def test_video_utc_time_in_local_zone(
    tmp_path: Path, name: str, options: dict[str, object]
) -> None:
    path = make_mp4(tmp_path / name, EVENING_UTC, **options)  # type: ignore[arg-type]
    assert date_of(path) == EVENING_NY


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        (UTC, datetime(2023, 7, 1, 3, 30)),
        (ZoneInfo("Asia/Tokyo"), datetime(2023, 7, 1, 12, 30)),
        (None, EVENING_UTC.astimezone().replace(tzinfo=None)),
    ],
)
def test_video_zone_choice(
    tmp_path: Path, tz: ZoneInfo | None, expected: datetime
) -> None:
    path = make_mp4(tmp_path / "v.mp4", EVENING_UTC)
    assert date_of(path, tz).when == expected


def test_quicktime_without_ftyp(tmp_path: Path) -> None:
    path = tmp_path / "old.mov"
    path.write_bytes(
        box(b"wide") + box(b"mdat", bytes(64)) + box(b"moov", mvhd(EVENING_UTC))
    )
    assert date_of(path) == EVENING_NY


def test_apple_creationdate_wins_over_mvhd(tmp_path: Path) -> None:
    # Shot at 22:30 in Chicago; the key's wall-clock time is kept, like EXIF.
    path = make_mov(
        tmp_path / "IMG_0001.MOV",
        datetime(2024, 1, 1, tzinfo=UTC),
        creationdate="2023-06-30T22:30:00-0500",
        camera=("Apple", "iPhone 12"),
    )
    expected = CaptureDate(datetime(2023, 6, 30, 22, 30), "video", timedelta(hours=-5))
    assert capture_info(path, NEW_YORK, NOW) == (expected, "Apple iPhone 12")


def test_bad_apple_creationdate_falls_back_to_mvhd(tmp_path: Path) -> None:
    path = make_mov(tmp_path / "v.mov", EVENING_UTC, creationdate="0000-00-00T00:00")
    assert date_of(path) == EVENING_NY


@pytest.mark.parametrize(
    "created",
    [None, datetime(1969, 7, 20, 20, 17, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)],
    ids=["zero-means-unknown", "1969", "future"],
)
def test_invalid_video_time_falls_through(
    tmp_path: Path, created: datetime | None
) -> None:
    path = make_mp4(tmp_path / "VID_20230412_103000.mp4", created)
    assert date_of(path) == CaptureDate(datetime(2023, 4, 12, 10, 30), "filename")


# ------------------------------------------------------------------ file names

NAMES = {
    "IMG_20230412_103000.jpg": datetime(2023, 4, 12, 10, 30),
    "VID_20230412_103000.mp4": datetime(2023, 4, 12, 10, 30),
    "20230412_103000.jpg": datetime(2023, 4, 12, 10, 30),
    "20230412_103000(1).jpg": datetime(2023, 4, 12, 10, 30),
    "PXL_20230412_103000123.jpg": datetime(2023, 4, 12, 10, 30, 0, 123000),
    "PXL_20230412_103000123.MP.jpg": datetime(2023, 4, 12, 10, 30, 0, 123000),
    "IMG-20230412-WA0001.jpg": datetime(2023, 4, 12),
    "VID-20230412-WA0001.mp4": datetime(2023, 4, 12),
    "Screenshot_2023-04-12-10-30-00.png": datetime(2023, 4, 12, 10, 30),
    "Screenshot_20230412-103000_Chrome.jpg": datetime(2023, 4, 12, 10, 30),
    "2023-04-12 10.30.00.jpg": datetime(2023, 4, 12, 10, 30),
    "2023-04-12_10-30-00.jpg": datetime(2023, 4, 12, 10, 30),
    "signal-2023-04-12-103000.jpg": datetime(2023, 4, 12, 10, 30),
    "signal-2023-04-12-10-30-00-123.jpg": datetime(2023, 4, 12, 10, 30),
    "Screenshot 2023-04-12 at 10.30.00.png": datetime(2023, 4, 12, 10, 30),
    "Screen Shot 2023-04-12 at 10.30.00 PM.png": datetime(2023, 4, 12, 22, 30),
    "WhatsApp Image 2023-04-12 at 12.05.00 AM.jpeg": datetime(2023, 4, 12, 0, 5),
    "PHOTO-2023-04-12-10-30-00.jpg": datetime(2023, 4, 12, 10, 30),
    "20230412T103000.jpg": datetime(2023, 4, 12, 10, 30),
    "MVIMG_20230412_103000_2.jpg": datetime(2023, 4, 12, 10, 30),
    "holiday 2023-04-12.jpg": datetime(2023, 4, 12),
    "IMG_20230412_253000.jpg": None,  # hour 25: the name's date is not trusted
    "IMG_1234.JPG": None,
    "DSC01234.ARW": None,
    "20231399_000000.jpg": None,
    "19691231_235959.jpg": None,
    "20240605_120000.jpg": None,  # days after NOW
    "123420230412103000.jpg": None,  # embedded in a longer number
}


@pytest.mark.parametrize("name", NAMES)
def test_file_name_patterns(tmp_path: Path, name: str) -> None:
    path = with_mtime(make_plain(tmp_path / name))
    expected = NAMES[name]
    assert date_of(path) == (
        MTIME_NY if expected is None else CaptureDate(expected, "filename")
    )


def test_facebook_epoch_name_is_utc(tmp_path: Path) -> None:
    millis = int(EVENING_UTC.timestamp() * 1000)
    path = make_plain(tmp_path / f"FB_IMG_{millis}.jpg")
    assert date_of(path) == CaptureDate(
        EVENING_NY.when, "filename", EVENING_NY.utc_offset
    )


def test_name_only_not_directories(tmp_path: Path) -> None:
    path = with_mtime(make_plain(tmp_path / "2019-01-01" / "IMG_0001.jpg"))
    assert date_of(path) == MTIME_NY


# ---------------------------------------------------------------------- mtime


def test_mtime_in_zone(tmp_path: Path) -> None:
    path = with_mtime(make_jpeg(tmp_path / "x.jpg"))
    assert date_of(path) == MTIME_NY
    assert date_of(path, UTC) == CaptureDate(
        MTIME.replace(tzinfo=None), "mtime", timedelta(0)
    )


def test_symlink_uses_its_own_mtime_not_the_target(tmp_path: Path) -> None:
    target = make_jpeg(tmp_path / "target.jpg", TAKEN)
    link = tmp_path / "link.jpg"
    link.symlink_to(target)
    set_mtime(link, MTIME)
    assert date_of(link) == MTIME_NY


@pytest.mark.timeout(20)
def test_fifo_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "IMG_20230412_103000.jpg"
    os.mkfifo(fifo)
    assert date_of(fifo) == CaptureDate(datetime(2023, 4, 12, 10, 30), "filename")


def test_out_of_range_mtime_is_still_the_last_resort(tmp_path: Path) -> None:
    path = set_mtime(make_plain(tmp_path / "x.bin"), datetime(1960, 1, 1, tzinfo=UTC))
    assert date_of(path, UTC) == CaptureDate(
        datetime(1960, 1, 1), "mtime", timedelta(0)
    )


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        capture_date(tmp_path / "gone.jpg")


# ---------------------------------------------------------------- camera model


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        (("Canon", "Canon EOS R5"), "Canon EOS R5"),
        (("Apple", "iPhone 12 Pro"), "Apple iPhone 12 Pro"),
        (("NIKON CORPORATION", "NIKON D750"), "NIKON D750"),
        (("samsung", "  SM-G991B  "), "samsung SM-G991B"),
        (("../..", "a/b\\c\x01d"), "a_b_c_d"),
        (("", "..."), None),
        (None, None),
    ],
)
def test_camera_model(
    tmp_path: Path, camera: tuple[str, str] | None, expected: str | None
) -> None:
    path = make_jpeg(tmp_path / "x.jpg", TAKEN, camera=camera)
    assert camera_model(path) == expected


def test_camera_model_of_heic_raw_and_mov(tmp_path: Path) -> None:
    assert camera_model(make_heic(tmp_path / "a.heic", camera="Canon EOS R5")) == (
        "Canon EOS R5"
    )
    assert camera_model(make_tiff_raw(tmp_path / "a.nef", camera="NIKON D750")) == (
        "NIKON D750"
    )
    mov = make_mov(tmp_path / "a.mov", EVENING_UTC, camera=("Apple", "iPhone 15"))
    assert camera_model(mov) == "Apple iPhone 15"
    assert camera_model(tmp_path / "missing.jpg") is None


# ------------------------------------------------------------- corrupt input


def test_truncated_files_never_raise(tmp_path: Path) -> None:
    sources = [
        make_jpeg(tmp_path / "s.jpg", TAKEN, camera="Canon EOS R5"),
        make_heic(tmp_path / "s.heic", TAKEN),
        make_tiff_raw(tmp_path / "s.dng", TAKEN),
        make_png(tmp_path / "s.png", TAKEN),
        make_webp(tmp_path / "s.webp", TAKEN),
        make_mov(tmp_path / "s.mov", EVENING_UTC, creationdate="2023-06-30T23:30:00Z"),
    ]
    acceptable = (
        MTIME_NY,
        CaptureDate(TAKEN, "exif"),
        CaptureDate(datetime(2023, 6, 30, 23, 30), "video", timedelta(0)),
        EVENING_NY,  # cut inside the Apple keys: the complete mvhd remains
    )
    for source in sources:
        data = source.read_bytes()
        for cut in sorted({2, 3, 4, 8, 12, 20, 30, 60, 100, len(data) // 2}):
            path = tmp_path / f"cut{cut}{source.suffix}"
            path.write_bytes(data[:cut])
            assert date_of(with_mtime(path)) in acceptable, (source.name, cut)


def _tiff(entries: list[tuple[int, int, int, bytes]], ifd0: int = 8) -> bytes:
    """A little-endian TIFF with one IFD of raw (tag, type, count, field) entries."""
    body = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI4s", *entry) for entry in entries
    )
    return b"II*\x00" + struct.pack("<I", ifd0) + body + b"\x00" * 4


def _app1(tiff: bytes) -> bytes:
    payload = b"Exif\x00\x00" + tiff
    return b"\xff\xd8\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


CORRUPT_IMAGES = {
    "jpeg-garbage-tiff": _app1(b"\x13" * 200),
    "jpeg-no-markers": b"\xff\xd8" + b"\x00" * 500,
    "jpeg-segment-length-0": b"\xff\xd8\xff\xe1\x00\x00Exif\x00\x00",
    "jpeg-only-fill-bytes": b"\xff\xd8" + b"\xff" * 5000,
    "jpeg-endless-app-segments": b"\xff\xd8" + b"\xff\xe2\x00\x02" * 50000,
    "exif-ifd-points-to-itself": _app1(
        _tiff([(0x8769, 4, 1, struct.pack("<I", 8)), (0x0132, 2, 20, b"\xff" * 4)])
    ),
    "ifd-count-huge": _app1(b"II*\x00\x08\x00\x00\x00\xff\xff"),
    "ifd0-offset-outside": _app1(_tiff([], ifd0=0xFFFFFFF0)),
    "text-count-huge": _app1(_tiff([(0x0132, 2, 0xFFFFFFFF, b"\x08\x00\x00\x00")])),
    "tiff-garbage": b"II*\x00" + bytes(range(256)) * 8,
    "png-chunk-huge": b"\x89PNG\r\n\x1a\n" + struct.pack(">I4s", 0xFFFFFFFF, b"eXIf"),
    "png-exif-garbage": b"\x89PNG\r\n\x1a\n"
    + struct.pack(">I4s", 8, b"eXIf")
    + b"x" * 8,
    "webp-chunk-huge": b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\xff" * 20,
    "heic-garbage": box(b"ftyp", b"heic\x00\x00\x00\x00mif1") + bytes(range(7, 250)),
    "heic-meta-huge": box(b"ftyp", b"heic\x00\x00\x00\x00")
    + box(b"meta", bytes(4) + box(b"iinf", bytes(6)), size=0xFFFFFFFF),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("data", CORRUPT_IMAGES.values(), ids=CORRUPT_IMAGES.keys())
def test_corrupt_images_fall_through(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "IMG_20230412_103000.jpg"
    path.write_bytes(data)
    assert date_of(path) == CaptureDate(datetime(2023, 4, 12, 10, 30), "filename")


FTYP = box(b"ftyp", b"isom\x00\x00\x00\x00isom")
CORRUPT_VIDEOS = {
    "moov-size-huge": FTYP + box(b"moov", mvhd(None), size=0xFFFFFFFF),
    "box-size-zero-to-eof": FTYP + box(b"free", size=0) + box(b"moov", mvhd(None)),
    "box-size-below-header": FTYP + box(b"junk", size=4) + bytes(64),
    "largesize-zero": FTYP + large_box(b"mdat", size=0) + bytes(64),
    "largesize-huge": FTYP + large_box(b"mdat", size=2**64 - 1) + bytes(64),
    "many-tiny-boxes": FTYP + box(b"free") * 20000,
    "mvhd-truncated": FTYP + box(b"moov", box(b"mvhd", b"\x01\x00")),
    "mvhd-v1-huge-time": FTYP + box(b"moov", full_box(b"mvhd", 1, 0, b"\xff" * 28)),
    "child-size-zero": FTYP + box(b"moov", box(b"meta", size=0) + mvhd(None)),
    "keys-count-huge": FTYP
    + box(b"moov", box(b"meta", full_box(b"keys", 0, 0, b"\xff" * 12) + box(b"ilst"))),
    "ilst-garbage": FTYP
    + box(
        b"moov",
        box(b"meta", full_box(b"keys", 0, 0, bytes(4)) + box(b"ilst", b"\xff" * 40)),
    ),
    "garbage-after-ftyp": FTYP + bytes(range(256)) * 4,
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("data", CORRUPT_VIDEOS.values(), ids=CORRUPT_VIDEOS.keys())
def test_corrupt_videos_fall_through(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "VID_20230412_103000.mp4"
    path.write_bytes(data)
    assert date_of(path) == CaptureDate(datetime(2023, 4, 12, 10, 30), "filename")


@pytest.mark.timeout(60)
def test_random_corruption_never_raises(tmp_path: Path) -> None:
    rng = random.Random(20230412)
    seeds = [
        make_jpeg(tmp_path / "s.jpg", TAKEN, offset="+02:00", camera="Canon EOS R5"),
        make_heic(tmp_path / "s.heic", TAKEN),
        make_tiff_raw(tmp_path / "s.nef", TAKEN),
        make_png(tmp_path / "s.png", TAKEN),
        make_webp(tmp_path / "s.webp", TAKEN),
    ]
    videos = [mp4_bytes(EVENING_UTC, apple={"com.apple.quicktime.make": "Apple"})]
    originals = [p.read_bytes() for p in seeds] + videos
    path = tmp_path / "fuzz"
    for round_ in range(600):
        data = bytearray(originals[round_ % len(originals)])
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(min(len(data), 2048))
            data[pos] = rng.choice([0x00, 0xFF, 0x01, 0x7F, rng.randrange(256)])
        path.write_bytes(bytes(data))
        result = capture_date(path, NEW_YORK, NOW)
        assert result.source in ("exif", "video", "filename", "mtime")


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"iloc_version": 1},
        {"iloc_version": 2, "infe_version": 3},
        {"iloc_version": 1, "in_idat": True},
        {"iloc_version": 2, "in_idat": True},
        {"base_offset": 20},
    ],
    ids=["v0", "v1", "v2-infe3", "v1-idat", "v2-idat", "base-offset"],
)
def test_heif_item_location_variants(tmp_path: Path, variant: dict[str, int]) -> None:
    path = tmp_path / "x.heic"
    exif = Exif(original=TAKEN, offset_original="+02:00", camera="Canon EOS R5")
    path.write_bytes(heif_bytes(exif, **variant))  # type: ignore[arg-type]
    expected = CaptureDate(TAKEN, "exif", PLUS_2)
    assert capture_info(path, NEW_YORK, NOW) == (expected, "Canon EOS R5")


def _tiff_far_from_start(padding: int) -> bytes:
    """Big-endian TIFF whose IFD0, EXIF IFD and values all sit after `padding`."""
    make, stamp = b"NIKON CORPORATION\x00", b"2023:04:12 10:30:00\x00"
    ifd0 = 8 + padding
    exif_ifd = ifd0 + 2 + 2 * 12 + 4
    values = exif_ifd + 2 + 12 + 4
    head = b"MM\x00*" + struct.pack(">I", ifd0) + bytes(padding)
    ifd0_bytes = struct.pack(">H", 2) + struct.pack(
        ">HHII", 0x010F, 2, len(make), values
    )
    ifd0_bytes += struct.pack(">HHII", 0x8769, 4, 1, exif_ifd) + bytes(4)
    exif_bytes = struct.pack(">H", 1)
    exif_bytes += struct.pack(">HHII", 0x9003, 2, len(stamp), values + len(make))
    return head + ifd0_bytes + exif_bytes + bytes(4) + make + stamp


def test_raw_with_metadata_far_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "DSC_0001.NEF"
    path.write_bytes(_tiff_far_from_start(3 * 1024 * 1024))
    assert capture_info(path, NEW_YORK, NOW) == (
        CaptureDate(TAKEN, "exif"),
        "NIKON CORPORATION",
    )


def test_embedded_date_beats_the_file_name(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "IMG_20200101_000000.jpg", TAKEN)
    video = make_mp4(tmp_path / "VID_20200101_000000.mp4", EVENING_UTC)
    assert date_of(photo) == CaptureDate(TAKEN, "exif")
    assert date_of(video) == EVENING_NY
