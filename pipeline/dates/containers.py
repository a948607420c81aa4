"""Walking image containers: JPEG segments, PNG/WebP chunks, ISO-BMFF boxes.

Every walk is bounded (a segment, chunk or box count, never past the file's
end) and raises Corrupt on a structure that would otherwise loop.
"""

import struct
from collections.abc import Callable, Iterator

from pipeline.dates.reader import MAX_BOXES, MAX_READ, Reader, Window
from pipeline.dates.values import Corrupt

MAX_SEGMENTS = 512
Range = tuple[int, int]  # payload start, payload end (absolute file offsets)

# ------------------------------------------------------------------------ JPEG


def jpeg_segments(reader: Reader) -> Iterator[tuple[int, int, int]]:
    """Yield (marker, payload start, payload length) of segments before the scan.

    A walk that reaches the scan is kept on the reader for the next source.
    """
    if reader.segments is not None:
        yield from reader.segments
        return
    walked: list[tuple[int, int, int]] = []
    pos = 2
    for _ in range(MAX_SEGMENTS):
        header = reader.read_at(pos, 4)
        if header[0] != 0xFF:
            raise Corrupt(f"no JPEG marker at {pos}")
        marker = header[1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan
            reader.segments = walked
            return
        (length,) = struct.unpack(">H", header[2:4])
        if length < 2:
            raise Corrupt(f"JPEG segment length {length}")
        segment = (marker, pos + 4, length - 2)
        walked.append(segment)
        yield segment
        pos += 2 + length


def _jpeg_tiff(reader: Reader) -> Window | None:
    """The EXIF APP1 segment before the image data."""
    for marker, start, length in jpeg_segments(reader):
        if marker == 0xE1 and length > 6 and reader.read_at(start, 4) == b"Exif":
            return Window(reader, start + 6, length - 6)
    return None


# ------------------------------------------------------------------ PNG, WebP


def png_chunks(reader: Reader) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, data start, data length) of PNG chunks up to IEND."""
    pos = 8
    for _ in range(MAX_BOXES * 16):  # IDAT may be split into many chunks
        if pos + 8 > reader.size:
            return
        length, kind = struct.unpack(">I4s", reader.read_at(pos, 8))
        if kind == b"IEND":
            return
        yield kind, pos + 8, length
        pos += 12 + length


def webp_chunks(reader: Reader) -> Iterator[tuple[bytes, int, int]]:
    """Yield (fourcc, data start, data length) of the chunks of a RIFF WebP."""
    pos = 12
    for _ in range(MAX_BOXES):
        if pos + 8 > reader.size:
            return
        kind, length = struct.unpack("<4sI", reader.read_at(pos, 8))
        yield kind, pos + 8, length
        pos += 8 + length + (length & 1)


def _exif_payload(reader: Reader, start: int, length: int) -> Window:
    """An EXIF chunk: a TIFF block, sometimes wrongly prefixed with Exif\\0\\0."""
    skip = 6 if reader.read_at(start, min(6, length)) == b"Exif\x00\x00" else 0
    return Window(reader, start + skip, length - skip)


def _png_tiff(reader: Reader) -> Window | None:
    for kind, start, length in png_chunks(reader):
        if kind == b"eXIf":
            return _exif_payload(reader, start, length)
    return None


def _webp_tiff(reader: Reader) -> Window | None:
    for kind, start, length in webp_chunks(reader):
        if kind == b"EXIF":
            return _exif_payload(reader, start, length)
    return None


def _tiff_file(reader: Reader) -> Window:
    return Window(reader, 0, reader.size)


# ------------------------------------------------------------- ISO-BMFF boxes


def boxes(reader: Reader, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload start, payload end) of the boxes in [start, end).

    A size smaller than its own header raises Corrupt (it would otherwise loop).
    """
    pos = start
    end = min(end, reader.size)
    for _ in range(MAX_BOXES):
        if pos + 8 > end:
            return
        size, kind = struct.unpack(">I4s", reader.read_at(pos, 8))
        header = 8
        if size == 1:  # 64-bit size follows the type
            if pos + 16 > end:
                return
            (size,) = struct.unpack(">Q", reader.read_at(pos + 8, 8))
            header = 16
        elif size == 0:  # extends to the end of the file
            size = end - pos
        if size < header:
            raise Corrupt(f"box {kind!r} at {pos} has size {size}")
        yield kind, pos + header, min(pos + size, end)
        pos += size


def find_box(reader: Reader, kind: bytes, start: int, end: int) -> Range | None:
    for found, payload_start, payload_end in boxes(reader, start, end):
        if found == kind:
            return payload_start, payload_end
    return None


def children(reader: Reader, box: Range, kinds: set[bytes]) -> dict[bytes, Range]:
    """First child box of each wanted kind."""
    found: dict[bytes, Range] = {}
    for kind, start, end in boxes(reader, *box):
        if kind in kinds and kind not in found:
            found[kind] = (start, end)
    return found


def payload(reader: Reader, box: Range) -> bytes:
    return reader.read_at(box[0], min(box[1] - box[0], MAX_READ))


class Cursor:
    """Sequential big-endian reads over an in-memory box payload."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> int:
        if size == 0:
            return 0
        if not 0 < size <= 8 or self.pos + size > len(self.data):
            raise Corrupt(f"cannot read {size} bytes at {self.pos}")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value


# An infe entry's item type and the bytes after it (name, content type, ...).
ItemTest = Callable[[bytes, bytes], bool]


def heif_item(reader: Reader, wanted: ItemTest) -> Range | None:
    """(start, end) of the first HEIF/AVIF item that `wanted` accepts."""
    meta = find_box(reader, b"meta", 0, reader.size)
    if meta is None:
        return None
    parts = children(reader, (meta[0] + 4, meta[1]), {b"iinf", b"iloc", b"idat"})
    if b"iinf" not in parts or b"iloc" not in parts:
        return None
    item_id = _heif_item_id(reader, parts[b"iinf"], wanted)
    if item_id is None:
        return None
    method, offset, length = _heif_item_extent(payload(reader, parts[b"iloc"]), item_id)
    if method == 1:  # offset into the idat box
        if b"idat" not in parts:
            raise Corrupt("item in a missing idat box")
        offset += parts[b"idat"][0]
    elif method != 0:
        raise Corrupt(f"iloc construction method {method}")
    return offset, offset + length


def _heif_tiff(reader: Reader) -> Window | None:
    """The Exif item of a HEIF/AVIF image, through meta/iinf and iloc."""
    item = heif_item(reader, lambda kind, _rest: kind == b"Exif")
    if item is None:
        return None
    offset, end = item
    (tiff_offset,) = struct.unpack(">I", reader.read_at(offset, 4))
    start = offset + 4 + tiff_offset
    return Window(reader, start, end - start)


def _heif_item_id(reader: Reader, iinf: Range, wanted: ItemTest) -> int | None:
    version = reader.read_at(iinf[0], 1)[0]
    entries = iinf[0] + (6 if version == 0 else 8)
    for kind, start, end in boxes(reader, entries, iinf[1]):
        if kind != b"infe" or end - start < 12:
            continue
        cur = Cursor(reader.read_at(start, min(end - start, 128)))
        infe_version = cur.take(1)
        cur.take(3)
        if infe_version < 2:
            continue
        item_id = cur.take(2 if infe_version == 2 else 4)
        cur.take(2)  # protection index
        item_type = cur.data[cur.pos : cur.pos + 4]
        if wanted(item_type, cur.data[cur.pos + 4 :]):
            return item_id
    return None


def _heif_item_extent(iloc: bytes, item_id: int) -> tuple[int, int, int]:
    """(construction method, offset, length) of a single-extent item."""
    cur = Cursor(iloc)
    version = cur.take(1)
    cur.take(3)
    sizes = cur.take(1)
    offset_size, length_size = sizes >> 4, sizes & 0x0F
    sizes = cur.take(1)
    base_size, index_size = sizes >> 4, (sizes & 0x0F if version in (1, 2) else 0)
    count = cur.take(2 if version < 2 else 4)
    for _ in range(count):
        current = cur.take(2 if version < 2 else 4)
        method = cur.take(2) & 0x0F if version in (1, 2) else 0
        cur.take(2)  # data reference index
        base = cur.take(base_size)
        extents = [
            (cur.take(index_size), cur.take(offset_size), cur.take(length_size))
            for _ in range(cur.take(2))
        ]
        if current == item_id:
            if len(extents) != 1:
                raise Corrupt(f"item in {len(extents)} extents")
            return method, base + extents[0][1], extents[0][2]
    raise Corrupt(f"item {item_id} not in iloc")


TIFF_LOCATORS: dict[str, Callable[[Reader], Window | None]] = {
    "jpeg": _jpeg_tiff,
    "tiff": _tiff_file,
    "png": _png_tiff,
    "webp": _webp_tiff,
    "heif": _heif_tiff,
}
