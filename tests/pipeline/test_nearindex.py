"""NearIndex: vectorised Hamming search, checked against a plain Python loop."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
from loguru import logger

from pipeline import hashbits
from pipeline.hashing import hamming, to_signed64
from pipeline.nearindex import NearIndex, popcount64, popcount64_table

MASK64 = (1 << 64) - 1


def flip(h: int, bits: list[int]) -> int:
    for b in bits:
        h ^= 1 << b
    return h


def brute_nearest(
    pairs: dict[int, int], h: int, max_distance: int, exclude: int | None = None
) -> tuple[int, int] | None:
    found = [
        (hamming(v, h), fid)
        for fid, v in pairs.items()
        if fid != exclude and hamming(v, h) <= max_distance
    ]
    if not found:
        return None
    dist, fid = min(found)
    return fid, dist


def brute_within(
    pairs: dict[int, int], h: int, max_distance: int, limit: int
) -> list[tuple[int, int]]:
    found = sorted(
        (hamming(v, h), fid)
        for fid, v in pairs.items()
        if hamming(v, h) <= max_distance
    )
    return [(fid, dist) for dist, fid in found[:limit]]


def clustered_hashes(seed: int, n: int) -> dict[int, int]:
    """Random ids -> clustered hashes: queries get several hits at mixed distances."""
    rng = np.random.default_rng(seed)
    centres = [int(x) for x in rng.integers(0, 1 << 63, 20, dtype=np.uint64) * 2 + 1]
    ids = rng.choice(10 * n, size=n, replace=False) + 1
    pairs = {}
    for fid in ids:
        centre = centres[int(rng.integers(len(centres)))]
        bits = [int(b) for b in rng.integers(0, 64, int(rng.integers(0, 12)))]
        pairs[int(fid)] = flip(centre, bits)
    return pairs


# ---------------------------------------------------------------------- basics


def test_empty_index() -> None:
    index = NearIndex()
    assert len(index) == 0
    assert index.nearest(123, 64) is None
    assert index.within(123, 64) == []


def test_add_and_nearest() -> None:
    index = NearIndex()
    base = 0x0123_4567_89AB_CDEF
    index.add(1, base)
    index.add(2, flip(base, [0, 1, 2, 3, 4]))
    index.add(3, ~base & MASK64)
    assert len(index) == 3
    assert index.nearest(base, 0) == (1, 0)
    assert index.nearest(flip(base, [1, 2, 3, 4]), 6) == (2, 1)
    assert index.nearest(flip(base, [10, 11, 12, 13, 14, 15, 16]), 6) is None
    assert index.nearest(flip(base, [10, 11, 12, 13, 14, 15, 16]), 7) == (1, 7)
    assert index.nearest(base, -1) is None


def test_ties_go_to_the_lowest_id() -> None:
    index = NearIndex()
    base = 0xFFFF_0000_FFFF_0000
    index.add(50, flip(base, [3]))
    index.add(7, flip(base, [5]))
    index.add(30, flip(base, [9]))
    index.add(2, flip(base, [1, 2]))
    assert index.nearest(base, 6) == (7, 1)


def test_exclude_skips_the_file_itself() -> None:
    index = NearIndex()
    base = 0xDEAD_BEEF_0000_1111
    index.add(1, base)
    index.add(2, flip(base, [40, 41]))
    assert index.nearest(base, 6) == (1, 0)
    assert index.nearest(base, 6, exclude=1) == (2, 2)
    assert index.nearest(base, 1, exclude=1) is None
    assert index.nearest(base, 6, exclude=99) == (1, 0)


def test_signed_and_unsigned_forms_are_the_same_hash() -> None:
    index = NearIndex()
    h = 0xF000_0000_0000_000F
    index.add(1, to_signed64(h))
    assert index.nearest(h, 0) == (1, 0)
    assert index.nearest(to_signed64(h), 0) == (1, 0)
    assert index.within(flip(h, [63]), 1) == [(1, 1)]


def test_remove() -> None:
    index = NearIndex()
    for fid in range(1, 6):
        index.add(fid, fid * 0x1111)
    index.remove(2)
    index.remove(2)  # unknown now: ignored
    index.remove(999)
    assert len(index) == 4
    assert index.nearest(2 * 0x1111, 0) is None
    for fid in (1, 3, 4, 5):
        assert index.nearest(fid * 0x1111, 0) == (fid, 0)
    index.remove(5)  # the last slot
    index.remove(1)  # the first slot
    assert sorted(fid for fid, _ in index.within(0, 64)) == [3, 4]


def test_adding_an_id_again_replaces_its_hash() -> None:
    index = NearIndex()
    index.add(1, 0)
    index.add(1, MASK64)
    assert len(index) == 1
    assert index.nearest(0, 10) is None
    assert index.nearest(MASK64, 0) == (1, 0)


def test_growth_from_tiny_capacity() -> None:
    index = NearIndex(capacity=1)
    rng = np.random.default_rng(3)
    hashes = [int(x) for x in rng.integers(0, 1 << 64, 1000, dtype=np.uint64)]
    for fid, h in enumerate(hashes, start=1):
        index.add(fid, h)
    assert len(index) == 1000
    for fid, h in enumerate(hashes, start=1):
        assert index.nearest(h, 0) == (fid, 0)


def test_add_many_merges_and_last_duplicate_wins() -> None:
    index = NearIndex(capacity=2)
    index.add(1, 0xAAAA)
    index.add(2, 0xBBBB)
    index.add_many([(3, 0xCCCC), (2, 0x1234), (4, 0xDDDD), (3, 0xEEEE)])
    index.add_many([])
    assert len(index) == 4
    assert index.nearest(0xAAAA, 0) == (1, 0)
    assert index.nearest(0x1234, 0) == (2, 0)
    assert index.nearest(0xBBBB, 0) is None
    assert index.nearest(0xEEEE, 0) == (3, 0)
    assert index.nearest(0xCCCC, 0) is None
    index.add(5, 0x5555)
    assert len(index) == 5


def test_within_orders_by_distance_then_id_and_limits() -> None:
    index = NearIndex()
    base = 0
    index.add(10, flip(base, [1, 2]))
    index.add(4, flip(base, [7, 8]))
    index.add(8, flip(base, [9]))
    index.add(1, flip(base, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
    assert index.within(base, 6) == [(8, 1), (4, 2), (10, 2)]
    assert index.within(base, 6, limit=2) == [(8, 1), (4, 2)]
    assert index.within(base, 6, limit=0) == []
    assert index.within(base, 64)[-1] == (1, 10)


# ------------------------------------------------------- equivalence + fallback


def check_against_brute_force(
    index: NearIndex, pairs: dict[int, int], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    values = list(pairs.values())
    ids = list(pairs)
    for _ in range(150):
        query = flip(values[int(rng.integers(len(values)))], [int(rng.integers(64))])
        if rng.random() < 0.2:
            query = int(rng.integers(0, 1 << 64, dtype=np.uint64))
        dist = int(rng.integers(0, 14))
        exclude = ids[int(rng.integers(len(ids)))] if rng.random() < 0.5 else None
        assert index.nearest(query, dist, exclude) == brute_nearest(
            pairs, query, dist, exclude
        )
        assert index.within(query, dist, 25) == brute_within(pairs, query, dist, 25)


def test_matches_brute_force_on_random_data() -> None:
    pairs = clustered_hashes(seed=4, n=800)
    index = NearIndex(capacity=16)
    items = list(pairs.items())
    index.add_many(items[:400])
    for fid, h in items[400:]:
        index.add(fid, to_signed64(h) if fid % 2 else h)
    assert len(index) == len(pairs)
    check_against_brute_force(index, pairs, seed=5)
    for fid, _ in items[::3]:
        index.remove(fid)
        del pairs[fid]
    check_against_brute_force(index, pairs, seed=6)


def test_table_popcount_matches_python() -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, 1 << 64, 5000, dtype=np.uint64)
    values[:3] = [0, (1 << 64) - 1, 1 << 63]
    expected = np.array([int(v).bit_count() for v in values], dtype=np.uint8)
    assert np.array_equal(popcount64_table(values), expected)
    assert np.array_equal(popcount64(values), expected)
    out = np.empty(len(values), dtype=np.uint8)
    popcount64_table(values, out=out)
    assert np.array_equal(out, expected)


def test_fallback_popcount_path_gives_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hashbits, "HAVE_BITWISE_COUNT", False)
    pairs = clustered_hashes(seed=8, n=300)
    index = NearIndex()
    index.add_many(pairs.items())
    check_against_brute_force(index, pairs, seed=9)


def test_concurrent_adds_and_lookups() -> None:
    index = NearIndex(capacity=4)
    errors: list[BaseException] = []

    def worker(start: int) -> None:
        try:
            for fid in range(start, start + 500):
                index.add(fid, fid)
                assert index.nearest(fid, 0) == (fid, 0)
        except BaseException as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 2000


# background load --------------------------------------------------------------------


def _arrays(pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array([i for i, _ in pairs], dtype=np.int64)
    hashes = np.array([h & MASK64 for _, h in pairs], dtype=np.uint64)
    return ids, hashes


def test_lookups_wait_for_the_background_load() -> None:
    release = threading.Event()
    index = NearIndex()

    def loader() -> tuple[np.ndarray, np.ndarray]:
        release.wait(10)
        return _arrays([(1, 0b1111), (2, -1)])

    index.load_in_background(loader)
    assert not index.ready
    found: list[object] = []
    asker = threading.Thread(target=lambda: found.append(index.nearest(0b1110, 2)))
    asker.start()
    asker.join(0.2)
    assert asker.is_alive() and not found  # still waiting: no answer from half an index
    release.set()
    asker.join(10)
    assert found == [(1, 1)]
    assert index.wait_ready(1) and index.ready
    assert index.nearest(MASK64, 0) == (2, 0)
    index.join_loader(1)


def test_adds_and_removes_during_the_load_win_over_its_snapshot() -> None:
    release = threading.Event()
    index = NearIndex()
    index.load_in_background(
        lambda: (release.wait(10), _arrays([(1, 0), (2, 0), (3, 0)]))[1]
    )
    index.add(2, 0xFF)  # re-hashed while loading: the new hash stays
    index.remove(3)  # changed while loading: the stale row must not come back
    index.add(4, 0xF0)
    release.set()
    assert index.wait_ready(10)
    assert len(index) == 3
    assert index.within(0, 64) == [(1, 0), (4, 4), (2, 8)]


def test_a_failing_load_leaves_lookups_working() -> None:
    index = NearIndex()

    def loader() -> tuple[np.ndarray, np.ndarray]:
        raise OSError("disk I/O error")

    messages: list[str] = []
    sink = logger.add(lambda m: messages.append(str(m)), level="ERROR")
    try:
        index.load_in_background(loader)
        assert index.wait_ready(10)
        index.join_loader(10)
    finally:
        logger.remove(sink)
    assert index.nearest(0, 64) is None
    assert any("could not be loaded" in m for m in messages)


def test_accepted_hashes_reads_informative_accepted_references_only(
    ctx: object,
) -> None:
    from pipeline.models import File
    from pipeline.nearindex import accepted_hashes

    signed = -0x0F0F0F0F0F0F0F10  # stored signed: the same 64 bits
    rows = [
        ("UNIQUE", signed, None),
        ("SORTED", 0xFFFF, None),
        ("BATCHED", 0xFF00FF, None),
        ("SORTED", 0xFFFF, 1),  # flagged near-duplicate: not a reference
        ("SORTED", 1 << 63 - 1, None),  # a flat image: matches everything
        ("DUPLICATE", 0xFFFF, None),
        ("NEW", 0xFFFF, None),
        ("SORTED", None, None),
    ]
    for n, (state, h, near) in enumerate(rows):
        File.create(
            original_path=f"/{n}", rel_path=str(n), current_path=f"/{n}",
            status=state, phash=h, near_duplicate_of=near,
        )  # fmt: skip
    ids, hashes = accepted_hashes(chunk=2)
    assert ids.tolist() == [1, 2, 3]
    assert hashes.tolist() == [signed & MASK64, 0xFFFF, 0xFF00FF]


# multi-index ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_multi_index_answers_like_a_linear_pass_through_changes(seed: int) -> None:
    rng = random.Random(seed)
    index = NearIndex(multi_index_min=50)
    index.DELTA_MIN = 16  # rebuild often: every path is taken many times
    truth: dict[int, int] = {}
    index.add_many((i, rng.getrandbits(64)) for i in range(1, 40))
    truth.update({i: h for i, h in index_pairs(index)})
    next_id = 40
    for step in range(1500):
        roll = rng.random()
        if roll < 0.55 or not truth:
            h = rng.getrandbits(64)
            if truth and rng.random() < 0.5:  # a close cousin of a stored hash
                h = flip(rng.choice(list(truth.values())), rng.sample(range(64), 3))
            index.add(next_id, h)
            truth[next_id] = h
            next_id += 1
        elif roll < 0.7:
            fid = rng.choice(list(truth))
            truth[fid] = rng.getrandbits(64)
            index.add(fid, truth[fid])  # replaced
        elif roll < 0.85:
            fid = rng.choice(list(truth))
            index.remove(fid)
            del truth[fid]
        if step % 10 == 0 and truth:
            base = rng.choice(list(truth.values()))
            q = flip(base, rng.sample(range(64), rng.randint(0, 9)))
            for d in (0, 3, 6, 7, 8, 11, 12, 20):
                got = index.within(q, d, limit=10_000)
                assert got == brute_within(truth, q, d, 10_000), (step, d)
                assert index.nearest(q, d) == brute_nearest(truth, q, d)
    assert index._multi is not None  # the multi-index was in use
    assert len(index) == len(truth)


def index_pairs(index: NearIndex) -> list[tuple[int, int]]:
    n = len(index)
    return [
        (int(i), int(h)) for i, h in zip(index._ids[:n], index._hashes[:n], strict=True)
    ]
