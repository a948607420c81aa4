"""XMP: find the packet in a container, then scan it for its capture dates.

The packet is scanned as bytes, not parsed as XML: nothing is validated, no
entity is expanded and a packet carrying a DTD (which XMP forbids; the only
way to smuggle an entity bomb) is ignored whole. Reads are bounded by
MAX_XMP; Extended XMP (JPEG) is joined from its chunks up to the same bound.
Dates: exif:DateTimeOriginal, photoshop:DateCreated, xmp:CreateDate, in that
order, whatever prefix the packet binds those namespaces to.
"""

import re
import struct
import zlib
from collections.abc import Callable, Iterator

from pipeline.dates.containers import (
    boxes,
    children,
    find_box,
    heif_item,
    jpeg_segments,
    png_chunks,
    webp_chunks,
)
from pipeline.dates.exif import ExifTags
from pipeline.dates.reader import Reader
from pipeline.dates.values import CaptureDate, Corrupt, parse_datetime

MAX_XMP = 1024 * 1024
_MAX_VALUE = 64
_MAX_PREFIXES = 4  # per namespace: each one costs a scan of the packet

_EXIF_NS = b"http://ns.adobe.com/exif/1.0/"
_PHOTOSHOP_NS = b"http://ns.adobe.com/photoshop/1.0/"
_XMP_NS = b"http://ns.adobe.com/xap/1.0/"
# (namespace, conventional prefix, property), best first.
_PROPERTIES = (
    (_EXIF_NS, b"exif", b"DateTimeOriginal"),
    (_PHOTOSHOP_NS, b"photoshop", b"DateCreated"),
    (_XMP_NS, b"xmp", b"CreateDate"),
)
_XMLNS = re.compile(
    rb"xmlns:([A-Za-z_][\w.\-]{0,63})\s*=\s*[\"']([^\"'<>]{1,256})[\"']"
)
_DTD = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_ATTRIBUTE_TAIL = re.compile(
    rb"\s{0,64}=\s{0,64}(?:\"([^\"<]{1,%d})\"|'([^'<]{1,%d})')"
    % (_MAX_VALUE, _MAX_VALUE)
)
# No blanks matched around the value: the parser strips them, and a \s* before
# [^<]{1,N} would backtrack over a long run of blanks.
_ELEMENT_TAIL = re.compile(rb"(?:\s[^<>]{0,256})?>([^<]{1,%d})</" % _MAX_VALUE)
_EXTENDED_GUID = re.compile(rb"HasExtendedXMP\s*(?:=\s*[\"']|>)\s*([0-9A-Fa-f]{32})")


def packet_dates(packet: bytes) -> Iterator[CaptureDate]:
    """Capture dates in one XMP packet, best first, each parsed only when asked
    for; none for a packet with a DTD."""
    packet = packet[:MAX_XMP]
    if _DTD.search(packet):
        return
    prefixes: dict[bytes, list[bytes]] = {}
    for prefix, uri in _XMLNS.findall(packet):
        bound = prefixes.setdefault(uri, [])
        if prefix not in bound and len(bound) < _MAX_PREFIXES:
            bound.append(prefix)
    for uri, usual, name in _PROPERTIES:
        for prefix in prefixes.get(uri) or [usual]:
            parsed = parse_datetime(_property(packet, prefix + b":" + name))
            if parsed is not None:
                yield CaptureDate(parsed[0], "xmp", parsed[1])
                break


def _property(packet: bytes, qname: bytes) -> str | None:
    """The text of `qname` written as an attribute or as a simple element.

    Found with bytes.find, then one anchored, bounded match per occurrence: the
    scan stays linear whatever the packet holds.
    """
    at = packet.find(qname)
    while at > 0:
        end = at + len(qname)
        before = packet[at - 1]
        if before == 0x3C:  # "<": an element
            element = _ELEMENT_TAIL.match(packet, end)
            if element is not None and packet.startswith(qname, element.end()):
                return element[1].decode("ascii", "replace")
        elif before in b" \t\r\n":
            attribute = _ATTRIBUTE_TAIL.match(packet, end)
            if attribute is not None:
                value = attribute[1] or attribute[2]
                return value.decode("ascii", "replace")
        at = packet.find(qname, end)
    return None


def embedded_dates(reader: Reader, kind: str, exif: ExifTags) -> Iterator[CaptureDate]:
    """Dates from the XMP embedded in a file of container `kind`."""
    for packet in _PACKETS[kind](reader, exif):
        yield from packet_dates(packet)


# ---------------------------------------------------------------- containers

_JPEG_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_EXTENDED = b"http://ns.adobe.com/xmp/extension/\x00"


def _jpeg_packets(reader: Reader, _exif: ExifTags) -> list[bytes]:
    """The standard packet (APP1), then its Extended XMP joined from its chunks."""
    main = b""
    chunks: dict[bytes, dict[int, bytes]] = {}
    total = 0
    for marker, start, length in jpeg_segments(reader):
        if marker != 0xE1 or length < len(_JPEG_XMP):
            continue
        head = reader.read_at(start, min(length, len(_JPEG_EXTENDED) + 40))
        if head.startswith(_JPEG_XMP) and not main:
            skip = len(_JPEG_XMP)
            main = reader.read_at(start + skip, length - skip)
        elif head.startswith(_JPEG_EXTENDED) and len(head) >= len(_JPEG_EXTENDED) + 40:
            skip = len(_JPEG_EXTENDED)
            guid = head[skip : skip + 32]
            (offset,) = struct.unpack(">I", head[skip + 36 : skip + 40])
            if total + length > MAX_XMP:
                continue
            total += length
            data = reader.read_at(start + skip + 40, length - skip - 40)
            chunks.setdefault(guid, {})[offset] = data
    packets = [main] if main else []
    guid_match = _EXTENDED_GUID.search(main)
    if guid_match is not None and guid_match[1] in chunks:
        parts = chunks[guid_match[1]]
        packets.append(b"".join(parts[k] for k in sorted(parts)))
    return packets


def _tiff_packets(reader: Reader, exif: ExifTags) -> list[bytes]:
    if exif.xmp is None:
        return []
    start, end = exif.xmp
    return [reader.read_at(start, min(end - start, MAX_XMP))]


_PNG_KEYWORD = b"XML:com.adobe.xmp\x00"


def _png_packets(reader: Reader, _exif: ExifTags) -> list[bytes]:
    for kind, start, length in png_chunks(reader):
        if kind != b"iTXt" or length < len(_PNG_KEYWORD) + 2:
            continue
        if reader.read_at(start, len(_PNG_KEYWORD)) != _PNG_KEYWORD:
            continue
        data = reader.read_at(start, min(length, MAX_XMP))[len(_PNG_KEYWORD) :]
        compressed = data[0] == 1
        # language tag and translated keyword, each NUL-terminated
        parts = data[2:].split(b"\x00", 2)
        if len(parts) < 3:
            raise Corrupt("iTXt without text")
        text = parts[2]
        if compressed:  # bounded: a zip bomb stops at MAX_XMP
            text = zlib.decompressobj().decompress(text, MAX_XMP)
        return [text]
    return []


def _webp_packets(reader: Reader, _exif: ExifTags) -> list[bytes]:
    for kind, start, length in webp_chunks(reader):
        if kind == b"XMP ":
            return [reader.read_at(start, min(length, MAX_XMP))]
    return []


def _heif_packets(reader: Reader, _exif: ExifTags) -> list[bytes]:
    item = heif_item(
        reader, lambda kind, rest: kind == b"mime" and b"application/rdf+xml" in rest
    )
    if item is None:
        return []
    return [reader.read_at(item[0], min(item[1] - item[0], MAX_XMP))]


_XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")


def _video_packets(reader: Reader, _exif: ExifTags) -> list[bytes]:
    """A top-level XMP `uuid` box (MP4), or moov/udta/XMP_ (QuickTime)."""
    for kind, start, end in boxes(reader, 0, reader.size):
        if kind == b"uuid" and reader.read_at(start, min(16, end - start)) == _XMP_UUID:
            return [reader.read_at(start + 16, min(end - start - 16, MAX_XMP))]
        if kind == b"moov":
            udta = children(reader, (start, end), {b"udta"}).get(b"udta")
            box = None if udta is None else find_box(reader, b"XMP_", *udta)
            if box is not None:
                return [reader.read_at(box[0], min(box[1] - box[0], MAX_XMP))]
    return []


_PACKETS: dict[str, Callable[[Reader, ExifTags], list[bytes]]] = {
    "jpeg": _jpeg_packets,
    "tiff": _tiff_packets,
    "png": _png_packets,
    "webp": _webp_packets,
    "heif": _heif_packets,
    "video": _video_packets,
}
