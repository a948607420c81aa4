"""In-memory near-duplicate index of 64-bit perceptual hashes.

Up to 32,768 hashes, one vectorised pass (XOR + popcount over a uint64 array) per
lookup. Past that a multi-index of the four 16-bit chunks (`ChunkIndex`) narrows a
lookup to the few buckets that can hold a match: 0.2 ms instead of about 1 ms among a
million hashes, so that intake does not slow down as the library grows. The index is
not persistent: the daemon fills it from the database at start with `load_in_background`
(a million hashes take about a second, which start-up does not wait for; lookups do).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import numpy as np
from loguru import logger

from pipeline.hashbits import (  # noqa: F401 - informative, popcount64_table: re-exported
    CHUNKS,
    MASK64,
    MAX_FLIPS,
    MIN_INFORMATIVE_BITS,
    MULTI_INDEX_MIN,
    ChunkIndex,
    as_u64,
    informative,
    popcount64,
    popcount64_table,
)
from pipeline.models import FileStatus, database_proxy, sql_list


class NearIndex:
    """Thread-safe map file_id -> 64-bit hash answering "which stored hash is close?".

    Hashes may be given signed (as stored in SQLite) or unsigned; both mean the same
    64 bits. A file_id holds one hash: adding it again replaces the hash. Callers
    leave out hashes that are not `informative` (flat images).
    """

    DELTA_MIN = 4096  # changes kept beside the multi-index before it is rebuilt

    def __init__(
        self, capacity: int = 1024, multi_index_min: int = MULTI_INDEX_MIN
    ) -> None:
        capacity = max(1, int(capacity))
        # A lookup among a million hashes in one pass costs about a millisecond; past
        # `multi_index_min` hashes a frozen `ChunkIndex` answers instead, with the
        # changes since it was built (`_gone` ids, the `_delta` entries) on the side.
        self._multi_min = max(1, int(multi_index_min))
        self._multi: ChunkIndex | None = None
        self._gone: set[int] = set()
        self._gone_arr: np.ndarray | None = None
        self._d_ids = np.zeros(64, dtype=np.int64)
        self._d_hashes = np.zeros(64, dtype=np.uint64)
        self._d_n = 0
        self._max_id = -1  # ids above it are new: adding one needs no search
        self._lock = threading.Lock()
        self._hashes = np.zeros(capacity, dtype=np.uint64)
        self._ids = np.zeros(capacity, dtype=np.int64)
        self._n = 0
        self._alloc_scratch(capacity)
        self._ready = threading.Event()
        self._ready.set()
        # While a background load runs: ids removed meanwhile (the load's snapshot
        # may still hold them). Ids added meanwhile are in the arrays and win.
        self._removed_while_loading: set[int] | None = None
        self._loader: threading.Thread | None = None

    def _alloc_scratch(self, capacity: int) -> None:
        # Reused by every lookup (under the lock): a fresh 8 MB temporary per lookup
        # at a million entries costs page faults and makes latency jittery.
        self._xor = np.empty(capacity, dtype=np.uint64)
        self._dist = np.empty(capacity, dtype=np.uint8)

    def __len__(self) -> int:
        with self._lock:
            return self._n

    def _grow_to(self, needed: int) -> None:
        capacity = len(self._hashes)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        hashes = np.zeros(capacity, dtype=np.uint64)
        ids = np.zeros(capacity, dtype=np.int64)
        hashes[: self._n] = self._hashes[: self._n]
        ids[: self._n] = self._ids[: self._n]
        self._hashes, self._ids = hashes, ids
        self._alloc_scratch(capacity)

    def _position(self, file_id: int) -> int | None:
        found = np.flatnonzero(self._ids[: self._n] == file_id)
        return int(found[0]) if found.size else None

    def add(self, file_id: int, h: int) -> None:
        """Store (or replace) the hash of `file_id`."""
        value = as_u64(h)
        with self._lock:
            if self._removed_while_loading is not None:
                self._removed_while_loading.discard(file_id)
            pos = self._position(file_id) if self._present(file_id) else None
            if pos is not None:
                self._hashes[pos] = value
            else:
                self._grow_to(self._n + 1)
                self._hashes[self._n] = value
                self._ids[self._n] = file_id
                self._n += 1
                self._max_id = max(self._max_id, file_id)
            self._multi_added(file_id, value)

    def add_many(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Store many (file_id, hash) pairs at once, e.g. from the database at start.

        A file_id already present, or repeated in `pairs`, keeps its last hash.
        """
        items = list(pairs)
        if not items:
            return
        ids = np.fromiter((int(i) for i, _ in items), dtype=np.int64, count=len(items))
        hashes = np.fromiter(
            (int(h) & MASK64 for _, h in items), dtype=np.uint64, count=len(items)
        )
        with self._lock:
            all_ids = np.concatenate([self._ids[: self._n], ids])
            all_hashes = np.concatenate([self._hashes[: self._n], hashes])
            # Last occurrence wins: unique over the reversed arrays keeps first seen.
            _, first_rev = np.unique(all_ids[::-1], return_index=True)
            keep = np.sort(len(all_ids) - 1 - first_rev)
            count = len(keep)
            self._grow_to(count)
            self._ids[:count] = all_ids[keep]
            self._hashes[:count] = all_hashes[keep]
            self._n = count
            self._bulk_changed()

    def remove(self, file_id: int) -> None:
        """Forget `file_id`; unknown ids are ignored."""
        with self._lock:
            if self._removed_while_loading is not None:
                self._removed_while_loading.add(file_id)
            pos = self._position(file_id) if self._present(file_id) else None
            if pos is None:
                return
            last = self._n - 1
            # Order carries no meaning: fill the hole with the last entry.
            self._hashes[pos] = self._hashes[last]
            self._ids[pos] = self._ids[last]
            self._n = last
            self._multi_removed(file_id)

    # multi-index bookkeeping (caller holds the lock) --------------------------------

    def _bulk_changed(self) -> None:
        """After many entries changed at once: rebuild the multi-index (or drop it)."""
        if self._n:
            self._max_id = max(self._max_id, int(self._ids[: self._n].max()))
        self._multi = None
        self._rebuild_if_due()

    def _rebuild_if_due(self) -> None:
        if self._multi is None:
            due = self._n >= self._multi_min
        else:
            due = self._d_n + len(self._gone) > max(
                self.DELTA_MIN, len(self._multi) // 16
            )
        if due:
            # About 0.2 s for a million hashes, once per 60,000 changes at that size.
            n = self._n
            self._multi = ChunkIndex(self._ids[:n].copy(), self._hashes[:n].copy())
            self._gone, self._gone_arr, self._d_n = set(), None, 0

    def _present(self, file_id: int) -> bool:
        """Whether `file_id` may be stored, without a pass over every entry.

        Ids come in growing but are decided out of order, so "above the largest" is
        not enough: past the multi-index threshold the frozen index (binary search)
        and the small delta answer exactly.
        """
        if self._multi is None:
            return file_id <= self._max_id
        if file_id not in self._gone and self._multi.contains(file_id):
            return True
        return self._delta_position(file_id) is not None

    def _delta_position(self, file_id: int) -> int | None:
        found = np.flatnonzero(self._d_ids[: self._d_n] == file_id)
        return int(found[0]) if found.size else None

    def _multi_added(self, file_id: int, value: np.uint64) -> None:
        if self._multi is None:
            self._rebuild_if_due()
            return
        if file_id not in self._gone and self._multi.contains(file_id):
            self._gone.add(file_id)  # its frozen hash is stale: the delta has it
            self._gone_arr = None
        pos = self._delta_position(file_id)
        if pos is None:
            if self._d_n == len(self._d_ids):
                self._d_ids = np.concatenate([self._d_ids, np.zeros_like(self._d_ids)])
                self._d_hashes = np.concatenate(
                    [self._d_hashes, np.zeros_like(self._d_hashes)]
                )
            pos, self._d_n = self._d_n, self._d_n + 1
            self._d_ids[pos] = file_id
        self._d_hashes[pos] = value
        self._rebuild_if_due()

    def _multi_removed(self, file_id: int) -> None:
        if self._multi is None:
            return
        if self._multi.contains(file_id):
            self._gone.add(file_id)
            self._gone_arr = None
        pos = self._delta_position(file_id)
        if pos is not None:
            last = self._d_n - 1
            self._d_ids[pos] = self._d_ids[last]
            self._d_hashes[pos] = self._d_hashes[last]
            self._d_n = last

    def _multi_candidates(
        self, h: np.uint64, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._multi is not None
        ids, dists = self._multi.candidates(h, max_distance)
        if self._gone and ids.size:
            if self._gone_arr is None:
                self._gone_arr = np.fromiter(self._gone, dtype=np.int64)
            keep = ~np.isin(ids, self._gone_arr)
            ids, dists = ids[keep], dists[keep]
        if self._d_n:
            d_dist = popcount64(self._d_hashes[: self._d_n] ^ h)
            hit = np.flatnonzero(d_dist <= max_distance)
            ids = np.concatenate([ids, self._d_ids[hit]])
            dists = np.concatenate([dists, d_dist[hit]])
        return ids, dists

    def _candidates(
        self, h: int, max_distance: int, exclude: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids, distances) of every entry within `max_distance`; caller holds lock."""
        if max_distance < 0 or self._n == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty.astype(np.uint8)
        if self._multi is not None and max_distance < CHUNKS * (MAX_FLIPS + 1):
            ids, dists = self._multi_candidates(as_u64(h), max_distance)
            if exclude is not None:
                keep = ids != exclude
                ids, dists = ids[keep], dists[keep]
            return ids, dists
        n = self._n
        xor = np.bitwise_xor(self._hashes[:n], as_u64(h), out=self._xor[:n])
        dist = popcount64(xor, out=self._dist[:n])
        hits = np.flatnonzero(dist <= min(max_distance, 64))
        ids = self._ids[hits]
        dists = dist[hits]
        if exclude is not None:
            keep = ids != exclude
            ids, dists = ids[keep], dists[keep]
        return ids, dists

    def nearest(
        self, h: int, max_distance: int, exclude: int | None = None
    ) -> tuple[int, int] | None:
        """(file_id, distance) of the closest hash within `max_distance`, else None.

        Ties go to the lowest file_id (the earliest file); `exclude` skips one file_id
        (typically the file being checked). Waits for a background load to finish.
        """
        self._ready.wait()
        with self._lock:
            ids, dists = self._candidates(h, max_distance, exclude)
        if ids.size == 0:
            return None
        best = dists.min()
        winner = ids[dists == best].min()
        return int(winner), int(best)

    def within(
        self, h: int, max_distance: int, limit: int = 50
    ) -> list[tuple[int, int]]:
        """Up to `limit` (file_id, distance) within `max_distance`, closest first.

        Equal distances are ordered by file_id. Waits for a background load to finish.
        """
        self._ready.wait()
        with self._lock:
            ids, dists = self._candidates(h, max_distance, None)
        if ids.size == 0 or limit <= 0:
            return []
        order = np.lexsort((ids, dists))[:limit]
        return [(int(ids[i]), int(dists[i])) for i in order]

    # background load ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """False while a background load runs."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until no background load runs; False on timeout."""
        return self._ready.wait(timeout)

    def load_in_background(
        self, loader: Callable[[], tuple[np.ndarray, np.ndarray]]
    ) -> threading.Thread:
        """Fill the index from `loader()` -> (ids int64, hashes uint64) on a thread.

        Lookups wait until it is done; `add` and `remove` may go on meanwhile and win
        over what the loader read. A loader that fails leaves the index with what it
        had (logged as an error): near-duplicate flags are advice, intake must go on.
        """
        with self._lock:
            self._ready.clear()
            self._removed_while_loading = set()
        thread = threading.Thread(
            target=self._load, args=(loader,), name="near-index-load", daemon=True
        )
        self._loader = thread
        thread.start()
        return thread

    def _load(self, loader: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        started = time.monotonic()
        try:
            ids, hashes = loader()
            self._merge_loaded(ids, hashes)
            logger.bind(
                event="near_index",
                duration_ms=round((time.monotonic() - started) * 1000),
            ).info("near-duplicate index loaded: {} hashes", len(ids))
        except Exception:
            logger.bind(event="near_index", status="failed").exception(
                "near-duplicate index could not be loaded; new images are compared"
                " only with those seen since start"
            )
        finally:
            with self._lock:
                self._removed_while_loading = None
            self._ready.set()

    def _merge_loaded(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        hashes = np.asarray(hashes).astype(np.uint64, copy=False)
        with self._lock:
            drop = np.fromiter(
                self._removed_while_loading or (), dtype=np.int64
            )  # removed meanwhile
            live = self._ids[: self._n]  # added meanwhile: newer than the snapshot
            keep = ~np.isin(ids, np.concatenate([drop, live]))
            ids, hashes = ids[keep], hashes[keep]
            count = self._n + len(ids)
            self._grow_to(count)
            self._ids[self._n : count] = ids
            self._hashes[self._n : count] = hashes
            self._n = count
            self._bulk_changed()

    def join_loader(self, timeout: float | None = None) -> None:
        """Wait for the background load thread (if any) to end."""
        if self._loader is not None:
            self._loader.join(timeout)


# A flagged near-duplicate is not a reference others are compared with (as in dedup).
_ACCEPTED_HASHES = (
    "SELECT id, phash FROM files NOT INDEXED WHERE phash IS NOT NULL"
    f" AND status IN {sql_list(FileStatus.ACCEPTED)} AND near_duplicate_of IS NULL"
)
_PAIR = np.dtype([("id", np.int64), ("h", np.int64)])


def accepted_hashes(chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """(ids, hashes) of every accepted image, read from the database in chunks.

    A table scan (`NOT INDEXED`): most rows qualify, so walking the status index
    would cost a random read per row. Chunks keep Python tuples from piling up.
    Closes this thread's connection afterwards (it runs on the loader thread).
    """
    parts: list[np.ndarray] = []
    try:
        cursor = database_proxy.execute_sql(_ACCEPTED_HASHES)
        while rows := cursor.fetchmany(chunk):
            parts.append(np.fromiter(rows, dtype=_PAIR, count=len(rows)))
    finally:
        if threading.current_thread() is not threading.main_thread():
            database_proxy.close()
    pairs = np.concatenate(parts) if parts else np.zeros(0, dtype=_PAIR)
    hashes = pairs["h"].view(np.uint64)
    bits = popcount64(hashes)  # flat images match everything: left out (`informative`)
    keep = (bits >= MIN_INFORMATIVE_BITS) & (bits <= 64 - MIN_INFORMATIVE_BITS)
    return pairs["id"][keep].copy(), hashes[keep].copy()
