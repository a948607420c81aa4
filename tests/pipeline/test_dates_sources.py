"""Capture dates from XMP, older cameras' records and sidecars (issue 14)."""

import json
import os
import subprocess
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pillow_heif
import pytest
from datesfixtures import (
    BILLION_LAUGHS,
    XMP_NOTE_NS,
    app0_ciff,
    app1_extended,
    app1_xmp,
    app12_picture_info,
    crw_bytes,
    jpeg_with,
    mp4_with_xmp,
    png_with_xmp,
    segment,
    takeout_json,
    xmp_packet,
)
from mediafixtures import (
    Exif,
    box,
    jpeg_bytes,
    make_jpeg,
    make_png,
    make_tiff_raw,
    mp4_bytes,
    mvhd,
    pattern,
    set_mtime,
)

from pipeline.dates import CaptureDate, capture_date, capture_info
from pipeline.dates.sidecars import takeout_names
from pipeline.dates.xmp import MAX_XMP, packet_dates

pillow_heif.register_heif_opener()

NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2024, 6, 1, 12, 0, 0)
MTIME = datetime(2021, 5, 6, 7, 8, 9, tzinfo=UTC)
MTIME_NY = CaptureDate(datetime(2021, 5, 6, 3, 8, 9), "mtime", timedelta(hours=-4))
ISO = "2003-08-31T10:15:00"
AUG_31 = datetime(2003, 8, 31, 10, 15)


def date_of(path: Path) -> CaptureDate:
    return capture_date(path, tz=NEW_YORK, now=NOW)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return set_mtime(path, MTIME)


def exiftool(folder: Path, *tags: str) -> dict[str, dict[str, str]]:
    """exiftool's values of `tags` for every file in `folder`, by file name."""
    out = subprocess.run(
        ["exiftool", "-j", "-G1", *(f"-{t}" for t in tags), str(folder)],
        capture_output=True,
        check=True,
        text=True,
    )
    return {Path(r.pop("SourceFile")).name: r for r in json.loads(out.stdout)}


# ------------------------------------------------------------------------ XMP


def xmp_files(folder: Path, packet: bytes) -> list[Path]:
    """The packet embedded in a JPEG, TIFF, PNG (plain and compressed), WebP, HEIC
    and MP4."""
    folder.mkdir(exist_ok=True)
    files = [write(folder / "x.jpg", jpeg_with(jpeg_bytes(), app1_xmp(packet)))]
    tiff = folder / "x.tif"
    pattern((32, 24), 1).save(tiff, tiffinfo={700: packet})
    png = make_png(folder / "x.png")
    zpng = folder / "z.png"
    zpng.write_bytes(png_with_xmp(png.read_bytes(), packet, compressed=True))
    png.write_bytes(png_with_xmp(png.read_bytes(), packet))
    webp, heic = folder / "x.webp", folder / "x.heic"
    pattern((32, 24), 2).save(webp, xmp=packet)
    pattern((32, 24), 3).save(heic, xmp=packet)
    mp4 = write(folder / "x.mp4", mp4_with_xmp(mp4_bytes(None), packet))
    return [*files, tiff, png, zpng, webp, heic, mp4]


def test_xmp_in_every_container(tmp_path: Path) -> None:
    packet = xmp_packet(exif_dto=ISO + "+02:00")
    for path in xmp_files(tmp_path, packet):
        assert date_of(path) == CaptureDate(AUG_31, "xmp", timedelta(hours=2)), path


def test_xmp_dates_agree_with_exiftool(tmp_path: Path) -> None:
    xmp_files(tmp_path, xmp_packet(exif_dto=ISO + "Z"))
    records = exiftool(tmp_path, "XMP-exif:DateTimeOriginal")
    names = {"x.jpg", "x.tif", "x.png", "z.png", "x.webp", "x.heic", "x.mp4"}
    assert set(records) == names
    for name, record in records.items():
        ours = date_of(tmp_path / name)
        assert ours.source == "xmp"
        theirs = record["XMP-exif:DateTimeOriginal"]
        assert ours.when.strftime("%Y:%m:%d %H:%M:%S") + "Z" == theirs


def test_quicktime_xmp_before_movie_header(tmp_path: Path) -> None:
    """moov/udta/XMP_ as QuickTime writes it; XMP comes before the video times."""
    packet = xmp_packet(create="2003-08-31T10:15:00-07:00")
    ftyp = box(b"ftyp", b"qt  " + bytes(4) + b"qt  ")
    moov = box(
        b"moov",
        mvhd(datetime(2020, 1, 1, tzinfo=UTC)) + box(b"udta", box(b"XMP_", packet)),
    )
    path = write(tmp_path / "x.mov", ftyp + moov + box(b"mdat", bytes(64)))
    assert date_of(path) == CaptureDate(AUG_31, "xmp", timedelta(hours=-7))
    record = exiftool(tmp_path, "XMP-xmp:CreateDate")["x.mov"]
    assert record["XMP-xmp:CreateDate"] == "2003:08:31 10:15:00-07:00"


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        # exif:DateTimeOriginal, then photoshop:DateCreated, then xmp:CreateDate
        (
            xmp_packet(exif_dto=ISO, photoshop="2003-08-30", create="2003-08-29"),
            CaptureDate(AUG_31, "xmp"),
        ),
        (
            xmp_packet(photoshop="2003-08-30", create="2003-08-29T01:00:00"),
            CaptureDate(datetime(2003, 8, 30), "xmp"),
        ),
        (xmp_packet(create="2003-08-29"), CaptureDate(datetime(2003, 8, 29), "xmp")),
        # an offset or Z keeps the wall-clock date as written
        (
            xmp_packet(exif_dto="2003-08-31T23:30-05:00"),
            CaptureDate(datetime(2003, 8, 31, 23, 30), "xmp", timedelta(hours=-5)),
        ),
        (
            xmp_packet(create="2003-08-31T00:30:00.25Z"),
            CaptureDate(datetime(2003, 8, 31, 0, 30, 0, 250000), "xmp", timedelta(0)),
        ),
        # elements instead of attributes, and unusual prefixes
        (
            xmp_packet(exif_dto=ISO, elements=True, prefixes=("e", "ps", "x1")),
            CaptureDate(AUG_31, "xmp"),
        ),
        # an invalid first choice falls through to the next
        (
            xmp_packet(exif_dto="0000-00-00T00:00:00", photoshop="2003-08-30"),
            CaptureDate(datetime(2003, 8, 30), "xmp"),
        ),
    ],
)
def test_xmp_property_order_and_values(
    tmp_path: Path, packet: bytes, expected: CaptureDate
) -> None:
    path = write(tmp_path / "x.jpg", jpeg_with(jpeg_bytes(), app1_xmp(packet)))
    assert date_of(path) == expected


def test_year_only_or_month_only_is_not_a_day(tmp_path: Path) -> None:
    for value in ("2003", "2003-08"):
        packet = xmp_packet(photoshop=value)
        path = write(tmp_path / "x.jpg", jpeg_with(jpeg_bytes(), app1_xmp(packet)))
        assert date_of(path) == MTIME_NY


def test_xmp_between_exif_capture_tags_and_ifd0_datetime(tmp_path: Path) -> None:
    packet = app1_xmp(xmp_packet(exif_dto=ISO))
    edited = jpeg_bytes(Exif(modified=datetime(2020, 1, 2, 3, 4, 5)))
    path = write(tmp_path / "edited.jpg", jpeg_with(edited, packet))
    assert date_of(path) == CaptureDate(AUG_31, "xmp")
    for tag in ("original", "digitized"):
        exif = Exif(**{tag: datetime(2001, 2, 3, 4, 5, 6)})  # type: ignore[arg-type]
        path = write(tmp_path / f"{tag}.jpg", jpeg_with(jpeg_bytes(exif), packet))
        assert date_of(path) == CaptureDate(datetime(2001, 2, 3, 4, 5, 6), "exif")
    # the EXIF date wins in a TIFF too, where the XMP comes from the same IFD0
    tiff = make_tiff_raw(tmp_path / "x.dng", datetime(2001, 2, 3, 4, 5, 6))
    assert date_of(tiff).source == "exif"


def test_extended_xmp_is_joined(tmp_path: Path) -> None:
    guid = "0123456789ABCDEF0123456789ABCDEF"
    main = xmp_packet(
        extra=f'xmlns:xmpNote="{XMP_NOTE_NS}" xmpNote:HasExtendedXMP="{guid}"'
    )
    padding = "<rdf:Description " + 'a="1" ' * 20000 + "/>"  # about 120 kB
    extended = xmp_packet(create=ISO, extra=padding)
    data = jpeg_with(jpeg_bytes(), app1_xmp(main), *app1_extended(guid, extended))
    path = write(tmp_path / "x.jpg", data)
    assert date_of(path) == CaptureDate(AUG_31, "xmp")
    record = exiftool(tmp_path, "XMP-xmp:CreateDate")["x.jpg"]
    assert record["XMP-xmp:CreateDate"] == "2003:08:31 10:15:00"


def test_extended_xmp_of_another_guid_is_ignored(tmp_path: Path) -> None:
    main = xmp_packet(
        extra=f'xmlns:xmpNote="{XMP_NOTE_NS}" xmpNote:HasExtendedXMP="{"A" * 32}"'
    )
    chunks = app1_extended("B" * 32, xmp_packet(create=ISO))
    path = write(tmp_path / "x.jpg", jpeg_with(jpeg_bytes(), app1_xmp(main), *chunks))
    assert date_of(path) == MTIME_NY


def test_billion_laughs_is_ignored_without_expanding(tmp_path: Path) -> None:
    packet = xmp_packet(exif_dto="&lol9;", create=ISO, doctype=BILLION_LAUGHS)
    path = write(tmp_path / "x.jpg", jpeg_with(jpeg_bytes(), app1_xmp(packet)))
    (tmp_path / "y.xmp").write_bytes(packet)
    y = write(tmp_path / "y.jpg", jpeg_bytes())
    tracemalloc.start()
    try:
        assert date_of(path) == MTIME_NY  # a packet with a DTD counts for nothing
        assert date_of(y) == MTIME_NY
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # expanded, lol9 alone would be 3 GB
    assert list(packet_dates(packet)) == []


def test_huge_and_hostile_packets_are_bounded(tmp_path: Path) -> None:
    # A packet past the bound is read only up to it: the date after it is not seen.
    big = b" " * (1024 * 1024 + 10) + xmp_packet(create=ISO)
    png = make_png(tmp_path / "x.png")
    png.write_bytes(png_with_xmp(png.read_bytes(), big))
    set_mtime(png, MTIME)
    assert date_of(png) == MTIME_NY
    # A compressed packet that inflates to 100 MB stops at the bound.
    bomb = b" " * (100 * 1024 * 1024) + xmp_packet(create=ISO)
    zpng = make_png(tmp_path / "z.png")
    zpng.write_bytes(png_with_xmp(zpng.read_bytes(), bomb, compressed=True))
    set_mtime(zpng, MTIME)
    tracemalloc.start()
    try:
        assert date_of(zpng) == MTIME_NY
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        b"<x:xmpmeta",
        b'exif:DateTimeOriginal="',
        b"<exif:DateTimeOriginal>2003-08-31" + b"9" * 60000,
        xmp_packet(exif_dto="2003-13-45T99:99:99"),
        xmp_packet(exif_dto="\u00e9t\u00e9 2003"),
        bytes(range(256)) * 50,
    ],
)
def test_malformed_xmp_falls_through(tmp_path: Path, packet: bytes) -> None:
    path = write(tmp_path / "x.jpg", jpeg_with(jpeg_bytes(), app1_xmp(packet)))
    assert date_of(path) == MTIME_NY


PREFIX_FLOOD = b" ".join(
    b'xmlns:p%d="http://ns.adobe.com/exif/1.0/"' % i for i in range(5000)
)


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        # blanks around an element's value are the value's own
        (
            b'<x:DateTimeOriginal xmlns:x="http://ns.adobe.com/exif/1.0/">\n  '
            b"2003-08-31\n </x:DateTimeOriginal>",
            [CaptureDate(datetime(2003, 8, 31), "xmp")],
        ),
        # long runs of blanks, thousands of prefixes for one namespace: scanned
        # in one pass each (a regex that backtracks would take minutes here)
        (b"<exif:DateTimeOriginal>" + b" " * MAX_XMP, []),
        (b" exif:DateTimeOriginal" + b" " * MAX_XMP, []),
        (PREFIX_FLOOD + b"<p4999:DateTimeOriginal>" + b" " * 900_000, []),
        (b"<exif:DateTimeOriginal>" * 40_000, []),
    ],
)
def test_xmp_scan_of_odd_packets(packet: bytes, expected: list[CaptureDate]) -> None:
    assert list(packet_dates(packet)) == expected


def test_truncated_xmp_containers_never_raise(tmp_path: Path) -> None:
    for source in xmp_files(tmp_path / "src", xmp_packet(exif_dto=ISO)):
        data = source.read_bytes()
        for cut in range(8, len(data), max(1, len(data) // 40)):
            path = tmp_path / f"cut{source.suffix}"
            path.write_bytes(data[:cut])
            found = date_of(path)
            assert found.source in ("xmp", "mtime"), (source, cut)


# ---------------------------------------------------------------- old cameras


def test_older_camera_records_agree_with_exiftool(tmp_path: Path) -> None:
    taken = datetime(2001, 5, 6, 7, 8, 9)
    ifd0 = pattern((32, 24), 1)
    exif = ifd0.getexif()
    exif[0x9003] = "2002:05:06 07:08:09"  # DateTimeOriginal in IFD0
    ifd0.save(tmp_path / "ifd0.jpg", exif=exif.tobytes())
    write(tmp_path / "old.crw", crw_bytes(taken))
    write(tmp_path / "powershot.jpg", jpeg_with(jpeg_bytes(), app0_ciff(taken)))
    write(tmp_path / "olympus.jpg", jpeg_with(jpeg_bytes(), app12_picture_info(taken)))
    expected = {
        "ifd0.jpg": ("exif", "IFD0:DateTimeOriginal", "2002:05:06 07:08:09"),
        "old.crw": ("makernote", "CanonRaw:DateTimeOriginal", "2001:05:06 07:08:09"),
        "powershot.jpg": ("makernote", "CIFF:DateTimeOriginal", "2001:05:06 07:08:09"),
        "olympus.jpg": (
            "makernote",
            "PictureInfo:DateTimeOriginal",
            "2001:05:06 07:08:09",
        ),
    }
    records = exiftool(tmp_path, "DateTimeOriginal")
    for name, (source, tag, value) in expected.items():
        ours = date_of(tmp_path / name)
        assert records[name][tag] == value, name
        assert (ours.source, ours.when.strftime("%Y:%m:%d %H:%M:%S")) == (
            source,
            value,
        ), name


def test_makernote_only_when_exif_and_xmp_have_none(tmp_path: Path) -> None:
    old = app12_picture_info(datetime(2001, 5, 6, 7, 8, 9))
    exif = jpeg_bytes(Exif(original=datetime(2002, 1, 1)))
    path = write(tmp_path / "a.jpg", jpeg_with(exif, old))
    assert date_of(path) == CaptureDate(datetime(2002, 1, 1), "exif")
    xmp = app1_xmp(xmp_packet(create=ISO))
    path = write(tmp_path / "b.jpg", jpeg_with(jpeg_bytes(), old, xmp))
    assert date_of(path) == CaptureDate(AUG_31, "xmp")
    # an APP0 CIFF is preferred to APP12 text when a JPEG has both
    ciff = app0_ciff(datetime(2000, 1, 2))
    path = write(tmp_path / "c.jpg", jpeg_with(jpeg_bytes(), old, ciff))
    assert date_of(path) == CaptureDate(datetime(2000, 1, 2), "makernote")


@pytest.mark.parametrize(
    "data",
    [
        crw_bytes(None),  # no TimeStamp record
        crw_bytes(datetime(2001, 1, 1))[:40],
        crw_bytes(datetime(2001, 1, 1))[:-4] + b"\xff\xff\xff\x7f",  # table offset
        crw_bytes(datetime(2001, 1, 1))[:-4] + b"\x00\x00\x00\x00",  # loops on itself
        b"II\x1a\x00\x00\x00HEAPCCDR" + bytes(12),
        b"II\xff\xff\xff\xffHEAPCCDR" + bytes(64),
    ],
)
def test_corrupt_ciff_falls_through(tmp_path: Path, data: bytes) -> None:
    assert date_of(write(tmp_path / "x.crw", data)) == MTIME_NY


def test_corrupt_picture_info_falls_through(tmp_path: Path) -> None:
    for text in (
        b"TimeDate=",
        b"TimeDate=abc",
        b"TimeDate=99999999999999",
        b"\xff" * 9,
    ):
        path = write(tmp_path / "x.jpg", jpeg_with(jpeg_bytes(), segment(0xEC, text)))
        assert date_of(path) == MTIME_NY


# ------------------------------------------------------------------- sidecars


@pytest.mark.parametrize("name", ["IMG_1.xmp", "IMG_1.XMP", "IMG_1.CR2.xmp"])
def test_xmp_sidecar(tmp_path: Path, name: str) -> None:
    photo = write(tmp_path / "IMG_1.CR2", b"no metadata")
    (tmp_path / name).write_bytes(xmp_packet(photoshop="2003-08-31"))
    assert date_of(photo) == CaptureDate(datetime(2003, 8, 31), "sidecar")
    record = exiftool(tmp_path / name, "XMP-photoshop:DateCreated")[name]
    assert record["XMP-photoshop:DateCreated"] == "2003:08:31"


def test_embedded_date_beats_sidecars(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "IMG_1.jpg", datetime(2010, 1, 1))
    (tmp_path / "IMG_1.xmp").write_bytes(xmp_packet(exif_dto=ISO))
    takeout_json(tmp_path / "IMG_1.jpg.json", datetime(2011, 1, 1, tzinfo=UTC))
    assert date_of(photo) == CaptureDate(datetime(2010, 1, 1), "exif")


TAKEN_UTC = datetime(2019, 7, 1, 2, 30, tzinfo=UTC)  # 22:30 on June 30 in New York
TAKEN_NY = CaptureDate(datetime(2019, 6, 30, 22, 30), "sidecar", timedelta(hours=-4))
LONG = "Screenshot_20190512-134522_com.whatsapp.android"  # a date in the name too


@pytest.mark.parametrize(
    ("photo", "sidecar"),
    [
        ("IMG_1.jpg", "IMG_1.jpg.json"),
        ("IMG_1.jpg", "IMG_1.json"),
        ("IMG_1.jpg", "IMG_1.jpg.supplemental-metadata.json"),
        ("IMG_1(1).jpg", "IMG_1.jpg(1).json"),
        ("IMG_1(1).jpg", "IMG_1.jpg.supplemental-metadata(1).json"),
        (f"{LONG}.jpg", f"{LONG}.jpg.supplemental-metadata.json"[:46] + ".json"),
        (f"{LONG}_01.jpg", f"{LONG}_01.jpg"[:46] + ".json"),
        # an edited copy shares the original's JSON
        ("IMG_1-edited.jpg", "IMG_1.jpg.json"),
        ("IMG_1-bearbeitet(1).jpg", "IMG_1.jpg.supplemental-metadata(1).json"),
    ],
)
def test_takeout_json_in_each_naming_form(
    tmp_path: Path, photo: str, sidecar: str
) -> None:
    path = write(tmp_path / photo, jpeg_bytes())  # WhatsApp-like: no EXIF at all
    takeout_json(tmp_path / sidecar, TAKEN_UTC, title=photo)
    assert len(sidecar) <= 51
    assert date_of(path) == TAKEN_NY


def test_takeout_names_are_few_and_first_is_the_newest_form() -> None:
    names = takeout_names("IMG_1.jpg")
    assert names[0] == "IMG_1.jpg.supplemental-metadata.json"
    assert set(names) == {
        "IMG_1.jpg.supplemental-metadata.json",
        "IMG_1.jpg.json",
        "IMG_1.json",
    }


def test_xmp_sidecar_before_takeout_and_bad_json_is_skipped(tmp_path: Path) -> None:
    photo = write(tmp_path / "IMG_2.png", b"\x89PNG\r\n\x1a\n")
    takeout_json(tmp_path / "IMG_2.png.json", TAKEN_UTC)
    (tmp_path / "IMG_2.xmp").write_bytes(xmp_packet(create=ISO))
    assert date_of(photo) == CaptureDate(AUG_31, "sidecar")
    os.unlink(tmp_path / "IMG_2.xmp")
    (tmp_path / "IMG_2.png.supplemental-metadata.json").write_text("[[[[")
    assert date_of(photo) == TAKEN_NY


@pytest.mark.parametrize(
    "doc",
    [
        "{}",
        '{"photoTakenTime": {"timestamp": "0"}}',
        '{"photoTakenTime": {"timestamp": "soon"}}',
        '{"photoTakenTime": {"timestamp": "99999999999999999999"}}',
        '{"photoTakenTime": "2019"}',
        "[" * 100000,
        "not json",
    ],
)
def test_bad_takeout_json_falls_through(tmp_path: Path, doc: str) -> None:
    photo = write(tmp_path / "IMG_3.jpg", jpeg_bytes())
    (tmp_path / "IMG_3.jpg.json").write_text(doc)
    assert date_of(photo) == MTIME_NY


def test_sidecars_are_regular_files_in_the_same_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    takeout_json(outside / "IMG_4.jpg.json", TAKEN_UTC)
    (outside / "IMG_4.xmp").write_bytes(xmp_packet(create=ISO))
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    photo = write(inbox / "IMG_4.jpg", jpeg_bytes())
    os.symlink(outside / "IMG_4.jpg.json", inbox / "IMG_4.jpg.json")
    os.symlink(outside / "IMG_4.xmp", inbox / "IMG_4.xmp")
    os.mkfifo(inbox / "IMG_4.json")
    assert date_of(photo) == MTIME_NY


def test_capture_info_of_a_takeout_photo_keeps_its_camera(tmp_path: Path) -> None:
    photo = make_jpeg(tmp_path / "IMG_5.jpg", camera=("Google", "Pixel 7"))
    takeout_json(tmp_path / "IMG_5.jpg.json", TAKEN_UTC)
    assert capture_info(photo, NEW_YORK, NOW) == (TAKEN_NY, "Google Pixel 7")
