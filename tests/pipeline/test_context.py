"""What a Context owns: two daemons' stages never share a lock or a cache."""

from __future__ import annotations

import threading
from collections.abc import Callable

from pipeline.batch import create_batch
from pipeline.cleanup import run_cleanup
from pipeline.context import Context


def finishes(fn: Callable[[], object], timeout: float = 60) -> bool:
    """Whether `fn` returns within `timeout` s (far above its real cost)."""
    worker = threading.Thread(target=fn, daemon=True)
    worker.start()
    worker.join(timeout)
    return not worker.is_alive()


def test_a_lock_held_by_one_context_does_not_block_another(
    make_ctx: Callable[..., Context],
) -> None:
    first, second = make_ctx(), make_ctx()
    with first.shared.batch_lock, first.shared.cleanup_lock:
        assert finishes(lambda: create_batch(second))
        assert finishes(lambda: run_cleanup(second, dry_run=True))


def test_each_context_keeps_its_own_optimize_time(
    make_ctx: Callable[..., Context],
) -> None:
    first, second = make_ctx(), make_ctx()
    run_cleanup(first)
    assert [a.action for a in run_cleanup(first) if a.action == "optimize_db"] == []
    optimized = [a.action for a in run_cleanup(second)]
    assert "optimize_db" in optimized
