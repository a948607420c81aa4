"""Builders of metadata that mediafixtures does not write: XMP, CIFF, APP12, Takeout.

jpeg_with(jpeg_bytes(), app1_xmp(xmp_packet(exif_dto="2003-08-31T10:15:00")))
png_with_xmp(png_bytes, xmp_packet(...), compressed=True)
crw_bytes(datetime(2001, 5, 6, 7, 8, 9))
"""

import json
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

from mediafixtures import box

EXIF_NS = "http://ns.adobe.com/exif/1.0/"
PHOTOSHOP_NS = "http://ns.adobe.com/photoshop/1.0/"
XMP_NS = "http://ns.adobe.com/xap/1.0/"
XMP_NOTE_NS = "http://ns.adobe.com/xmp/note/"


def xmp_packet(
    *,
    exif_dto: str | None = None,
    photoshop: str | None = None,
    create: str | None = None,
    elements: bool = False,
    prefixes: tuple[str, str, str] = ("exif", "photoshop", "xmp"),
    extra: str = "",
    doctype: str = "",
) -> bytes:
    """An XMP packet with the three date properties as attributes or elements."""
    values = [
        (prefixes[0], EXIF_NS, "DateTimeOriginal", exif_dto),
        (prefixes[1], PHOTOSHOP_NS, "DateCreated", photoshop),
        (prefixes[2], XMP_NS, "CreateDate", create),
    ]
    xmlns = " ".join(f'xmlns:{p}="{ns}"' for p, ns, _, _ in values)
    present = [(p, name, v) for p, _, name, v in values if v is not None]
    if elements:
        attrs = ""
        body = "".join(f"<{p}:{n}>{v}</{p}:{n}>" for p, n, v in present)
    else:
        attrs = " ".join(f'{p}:{n}="{v}"' for p, n, v in present)
        body = ""
    return (
        f"{doctype}<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>"
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" {xmlns} {attrs} {extra}>{body}'
        "</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
    ).encode()


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">'.replace(
            "&lol0;", "&lol;"
        )
        for i in range(1, 10)
    )
    + "]>"
)


def segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data


def app1_xmp(packet: bytes) -> bytes:
    return segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + packet)


def app1_extended(guid: str, full: bytes, chunk: int = 30000) -> list[bytes]:
    """Extended XMP: `full` split into APP1 chunks (GUID, total length, offset)."""
    head = b"http://ns.adobe.com/xmp/extension/\x00" + guid.encode()
    return [
        segment(0xE1, head + struct.pack(">II", len(full), at) + full[at : at + chunk])
        for at in range(0, len(full), chunk)
    ]


def jpeg_with(jpeg: bytes, *segments: bytes) -> bytes:
    """`jpeg` with `segments` inserted right after SOI (before its own APPn)."""
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data)
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_with_xmp(png: bytes, packet: bytes, compressed: bool = False) -> bytes:
    """An iTXt `XML:com.adobe.xmp` chunk inserted after IHDR."""
    text = zlib.compress(packet) if compressed else packet
    data = b"XML:com.adobe.xmp\x00" + bytes([int(compressed), 0]) + b"\x00\x00" + text
    ihdr_end = 8 + 25
    return png[:ihdr_end] + png_chunk(b"iTXt", data) + png[ihdr_end:]


def mp4_with_xmp(mp4: bytes, packet: bytes) -> bytes:
    """A top-level XMP uuid box appended to an MP4."""
    uuid = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
    return mp4 + box(b"uuid", uuid + packet)


# ---------------------------------------------------------------- Canon CIFF


def _ciff_heap(entries: list[tuple[int, bytes]]) -> bytes:
    """A CIFF heap: value data, then the entry table, then the table's offset."""
    data = b""
    table = b""
    for tag, value in entries:
        table += struct.pack("<HII", tag, len(value), len(data))
        data += value
    return data + struct.pack("<H", len(entries)) + table + struct.pack("<I", len(data))


def ciff_block(when: datetime | None, signature: bytes = b"HEAPCCDR") -> bytes:
    """A little-endian CIFF: root heap > ImageProps (0x300a) > TimeStamp (0x180e)."""
    stamp = b"" if when is None else struct.pack("<III", _camera_seconds(when), 0, 0)
    owner = b"Canon PowerShot\x00"
    props = _ciff_heap([(0x0810, owner)] + ([(0x180E, stamp)] if stamp else []))
    root = _ciff_heap([(0x0805, b"comment\x00"), (0x300A, props)])
    header = b"II" + struct.pack("<I", 26) + signature + struct.pack("<I", 0x10002)
    return header + bytes(8) + root


def crw_bytes(when: datetime | None) -> bytes:
    return ciff_block(when)


def app0_ciff(when: datetime | None) -> bytes:
    """The APP0 segment of an early PowerShot JPEG: CIFF with HEAPJPGM."""
    return segment(0xE0, ciff_block(when, b"HEAPJPGM"))


def app12_picture_info(when: datetime) -> bytes:
    text = (
        f"[picture info]\r\nTimeDate={_camera_seconds(when)}\r\nShutter=10000\r\n"
        "FNumber=F2.8\r\n[camera info]\r\nType=C-900Z\r\n"
    )
    return segment(0xEC, text.encode() + b"\x00")


def _camera_seconds(when: datetime) -> int:
    """Seconds since 1970 counted in the camera's wall clock."""
    return int(when.replace(tzinfo=UTC).timestamp())


# ---------------------------------------------------------------- Takeout


def takeout_json(path: Path, taken_utc: datetime | None, title: str = "") -> Path:
    doc: dict[str, object] = {
        "title": title,
        "creationTime": {"timestamp": "1700000000", "formatted": "upload time"},
    }
    if taken_utc is not None:
        doc["photoTakenTime"] = {
            "timestamp": str(int(taken_utc.timestamp())),
            "formatted": taken_utc.isoformat(),
        }
    path.write_text(json.dumps(doc))
    return path
