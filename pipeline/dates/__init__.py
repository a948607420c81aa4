"""Capture date of a photo or video, and the camera that took it.

Sources, first valid wins (pipeline.dates.chain): embedded EXIF, XMP and an
older camera's own records (JPEG, TIFF and TIFF-based RAW, Canon CRW, PNG,
WebP, HEIC/HEIF), QuickTime/MP4 metadata, sidecars beside the file (XMP,
Google Takeout JSON), a date in the file name, then the file's own mtime.
Metadata is found by content, not by extension, and read with small bounded
reads (never the whole file). Corrupt metadata never raises; it falls through
to the next source. One module per kind of source:

    values      CaptureDate, parsing of date text, validity
    reader      bounded reads of an open file, container sniffing
    containers  JPEG segments, PNG/WebP chunks, ISO-BMFF boxes, HEIF items
    exif        the TIFF/EXIF walker (exifread as the fallback)
    xmp         XMP packets in every container, scanned without an XML parser
    makernote   Canon CIFF, APP12 Picture Info
    video       QuickTime/MP4 creation dates
    sidecars    .xmp sidecars, Google Takeout JSON
    names       dates in file names, the camera as a folder name
    chain       the order of the sources: capture_date, capture_info
"""

from pipeline.dates.chain import camera_model, capture_date, capture_info
from pipeline.dates.values import CaptureDate, CaptureSource, StrPath

__all__ = [
    "CaptureDate",
    "CaptureSource",
    "StrPath",
    "camera_model",
    "capture_date",
    "capture_info",
]
