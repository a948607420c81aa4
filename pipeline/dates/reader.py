"""Bounded reads of one open file, and what kind of container it is."""

import os
import stat

from pipeline.dates.values import Corrupt, StrPath

HEAD_BYTES = 8 * 1024  # one read covers the tags of nearly every file
MAX_READ = 1024 * 1024  # no single metadata read is allowed to be larger
MAX_TEXT = 256
MAX_BOXES = 4096
MAX_IFD_ENTRIES = 1024
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Reader:
    """Bounded random access to an open file; the first bytes come from memory."""

    __slots__ = ("fd", "size", "head", "segments")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self.head = os.pread(fd, HEAD_BYTES, 0)
        # A JPEG's segment list once walked to the scan; later sources reuse it.
        self.segments: list[tuple[int, int, int]] | None = None

    def read_at(self, pos: int, length: int) -> bytes:
        """Return exactly `length` bytes at `pos`, or raise Corrupt."""
        end = pos + length
        if 0 <= pos <= end <= len(self.head):
            return self.head[pos:end]
        if pos < 0 or length < 0 or length > MAX_READ or end > self.size:
            raise Corrupt(f"read of {length} bytes at {pos} outside the file")
        data = os.pread(self.fd, length, pos)
        if len(data) != length:
            raise Corrupt(f"file shorter than expected at {pos}")
        return data


class Window:
    """A slice of a file (e.g. a TIFF block) addressed from its own start."""

    __slots__ = ("reader", "base", "limit", "cached")

    def __init__(self, reader: Reader, base: int, limit: int) -> None:
        if base < 0 or limit < 0:
            raise Corrupt(f"metadata block at {base} of {limit} bytes")
        self.reader = reader
        self.base = base
        self.limit = limit
        self.cached = reader.head[base : base + limit]

    def read(self, offset: int, length: int) -> bytes:
        end = offset + length
        if 0 <= offset <= end <= len(self.cached):
            return self.cached[offset:end]
        if offset < 0 or length < 0 or end > self.limit:
            raise Corrupt(f"offset {offset} outside the metadata block")
        return self.reader.read_at(self.base + offset, length)


def read_small(path: StrPath, limit: int) -> bytes | None:
    """At most `limit` bytes of a regular file; None if it is not one (symlinks
    are not followed, a FIFO does not block), is missing or is bigger."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = os.pread(fd, st.st_size, 0)
        return data if len(data) == st.st_size else None
    except OSError:
        return None
    finally:
        os.close(fd)


_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
    | {b"avif", b"avis", b"mif2"}
)
_QT_TOP_BOXES = frozenset({b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"})


def sniff(head: bytes) -> str | None:
    """Name the container from its first bytes: jpeg, tiff, png, ..., video."""
    if head[:2] == b"\xff\xd8":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"IIU\x00"):
        return "tiff"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp":
        return "heif" if head[8:12] in _HEIF_BRANDS else "video"
    if head[4:8] in _QT_TOP_BOXES:
        return "video"
    if head[:2] in (b"II", b"MM") and head[6:14] == b"HEAPCCDR":
        return "crw"  # Canon CIFF raw
    return None
