"""64-bit pHash arithmetic for the near-duplicate index.

Popcount over numpy arrays (numpy's `bitwise_count`, or a byte table on numpy < 2),
which hashes say enough to match on (`informative`), and `ChunkIndex`: the frozen
multi-index of the four 16-bit chunks that narrows a lookup among many hashes.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
# pHash sets a bit for each low-frequency DCT coefficient above their median, so an
# image with detail has about 32 bits set. A flat image (one colour, a blank frame) has
# all coefficients but the DC one at zero: one bit set (8000000000000000), whatever its
# colour or size. Below this many set bits the hash says too little to match on.
MIN_INFORMATIVE_BITS = 8

_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
HAVE_BITWISE_COUNT = hasattr(np, "bitwise_count")  # numpy >= 2


def popcount64_table(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Byte-table popcount; the fallback for numpy without `np.bitwise_count`."""
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8)
    counts = _BYTE_BITS[as_bytes].reshape(-1, 8)
    return counts.sum(axis=1, dtype=np.uint8, out=out)


def popcount64(values: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Set bits per element of a uint64 array, as uint8 (into `out` when given)."""
    if HAVE_BITWISE_COUNT:
        return np.bitwise_count(values, out=out)
    return popcount64_table(values, out=out)


def informative(h: int) -> bool:
    """Whether a pHash carries enough detail to be matched (not a flat image)."""
    bits = (int(h) & MASK64).bit_count()
    return MIN_INFORMATIVE_BITS <= bits <= 64 - MIN_INFORMATIVE_BITS


CHUNKS = 4  # 16-bit pieces of a hash, for the multi-index (see `ChunkIndex`)
CHUNK_BITS = 64 // CHUNKS
MAX_FLIPS = 2  # the multi-index answers distances up to CHUNKS * (MAX_FLIPS + 1) - 1
MULTI_INDEX_MIN = 32_768  # below this many hashes one linear pass is as fast


def _flip_masks(bits: int, flips: int) -> np.ndarray:
    """Every `bits`-bit mask with at most `flips` bits set (0 first)."""
    masks = [0]
    if flips >= 1:
        masks += [1 << a for a in range(bits)]
    if flips >= 2:
        masks += [(1 << a) | (1 << b) for a in range(bits) for b in range(a + 1, bits)]
    return np.array(masks, dtype=np.int64)


_MASKS = [_flip_masks(CHUNK_BITS, f) for f in range(MAX_FLIPS + 1)]


class ChunkIndex:
    """A frozen multi-index over (ids, hashes): candidates in microseconds, not O(n).

    Pigeonhole: two hashes within distance d differ in at most d // 4 bits in at
    least one of their four 16-bit chunks. So the entries whose chunk c equals the
    query's chunk c with up to d // 4 bits flipped, over the four chunks, include
    every match; each such bucket holds about n / 65,536 entries. Entries are sorted
    by id so that membership is a binary search.
    """

    SPAN = (1 << CHUNK_BITS) + 1  # bucket starts per chunk (65,536 buckets + end)

    def __init__(self, ids: np.ndarray, hashes: np.ndarray):
        by_id = np.argsort(ids, kind="stable")
        self.ids = ids[by_id]
        self.hashes = hashes[by_id]
        n = len(self.ids)
        # One flat array for the four chunks' orders (chunk c at c * n) and one for
        # their bucket starts (chunk c at c * SPAN, already offset by c * n), so a
        # lookup is a handful of numpy calls whatever the number of chunks.
        self.order = np.empty(CHUNKS * n, dtype=np.int32)
        self.starts = np.empty(CHUNKS * self.SPAN, dtype=np.int64)
        for c in range(CHUNKS):
            key = (
                (self.hashes >> np.uint64(c * CHUNK_BITS)) & np.uint64(0xFFFF)
            ).astype(np.uint16)
            order = np.argsort(key, kind="stable")
            self.order[c * n : (c + 1) * n] = order
            self.starts[c * self.SPAN : (c + 1) * self.SPAN] = c * n + np.searchsorted(
                key[order], np.arange(self.SPAN)
            )

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, file_id: int) -> bool:
        pos = int(np.searchsorted(self.ids, file_id))
        return pos < len(self.ids) and int(self.ids[pos]) == file_id

    def candidates(
        self, h: np.uint64, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances) within `max_distance` (<= CHUNKS * (MAX_FLIPS + 1) - 1)."""
        masks = _MASKS[max_distance // CHUNKS]
        value = int(h)
        chunks = [(value >> (c * CHUNK_BITS)) & 0xFFFF for c in range(CHUNKS)]
        # Every bucket to read: (chunk c, its key with up to d // 4 bits flipped).
        keys = (np.array(chunks)[:, None] ^ masks).ravel()
        keys += np.repeat(np.arange(CHUNKS) * self.SPAN, len(masks))
        lo = self.starts[keys]
        counts = self.starts[keys + 1] - lo
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8)
        # The concatenated ranges lo[i] .. lo[i] + counts[i], without a Python loop.
        at = np.repeat(lo - np.cumsum(counts) + counts, counts) + np.arange(total)
        pos = self.order[at]
        dist = popcount64(self.hashes[pos] ^ h)
        hit = dist <= max_distance
        # An entry may sit in several matching buckets: count it once.
        pos, first = np.unique(pos[hit], return_index=True)
        return self.ids[pos], dist[hit][first]


def as_u64(h: int) -> np.uint64:
    """A hash in signed (as stored) or unsigned form, as numpy uint64."""
    return np.uint64(int(h) & MASK64)
