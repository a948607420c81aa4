"""The staged runner: order, bounded queues, errors per item, sentinel shutdown."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

from pipeline.runner import Runner, Stage, heartbeat
from tests.conftest import wait_until


def test_items_flow_through_stages_in_order() -> None:
    out: list[int] = []
    stages = [
        Stage("double", lambda ctx, x: x * 2, workers=3),
        Stage("plus", lambda ctx, x: x + 1),
        Stage("collect", lambda ctx, x: out.append(x)),
    ]
    runner: Runner[None] = Runner(None, stages, lambda *a: None, queue_size=4)
    runner.start()
    for n in range(50):
        runner.submit(n)
    assert runner.stop(timeout=10)
    assert sorted(out) == [n * 2 + 1 for n in range(50)]
    assert not runner.is_alive()


def test_failing_item_is_reported_and_the_pipeline_goes_on() -> None:
    errors: list[tuple[Any, str, str]] = []
    out: list[int] = []

    def picky(ctx: Any, x: int) -> int:
        if x == 3:
            raise ValueError("three is bad")
        return x

    stages = [
        Stage("picky", picky, workers=2),
        Stage("sink", lambda c, x: out.append(x)),
    ]
    runner: Runner[None] = Runner(
        None,
        stages,
        lambda ctx, item, stage, exc: errors.append((item, stage, str(exc))),
    )
    runner.start()
    for n in range(6):
        runner.submit(n)
    runner.stop()
    assert errors == [(3, "picky", "three is bad")]
    assert sorted(out) == [0, 1, 2, 4, 5]


def test_none_drops_the_item_and_error_handler_failure_is_contained() -> None:
    seen: list[int] = []

    def boom(*args: Any) -> None:
        raise RuntimeError("handler broke")

    stages = [
        Stage("filter", lambda c, x: x if x % 2 else None),
        Stage("explode", lambda c, x: 1 / 0 if x == 1 else x),
        Stage("sink", lambda c, x: seen.append(x)),
    ]
    runner: Runner[None] = Runner(None, stages, boom)
    runner.start()
    for n in range(6):
        runner.submit(n)
    runner.stop()
    assert seen == [3, 5]


def test_stop_drains_queued_work_and_bounded_queue_blocks() -> None:
    gate = threading.Event()
    done: list[int] = []

    def slow(ctx: Any, x: int) -> None:
        gate.wait(5)
        done.append(x)

    runner: Runner[None] = Runner(
        None, [Stage("slow", slow)], lambda *a: None, queue_size=2
    )
    runner.start()
    runner.submit(0)
    wait_until(lambda: runner.pending() == 1)
    runner.submit(1)
    runner.submit(2)
    with pytest.raises(queue.Full):  # the queue is bounded
        runner.submit(3, timeout=0.05)
    assert runner.is_alive()
    gate.set()
    assert runner.stop(timeout=5)
    assert done == [0, 1, 2]
    with pytest.raises(RuntimeError):
        runner.submit(4)


def test_stop_returns_false_when_a_stage_hangs() -> None:
    hang = threading.Event()
    runner: Runner[None] = Runner(
        None, [Stage("hang", lambda c, x: hang.wait(120))], lambda *a: None
    )
    runner.start()
    runner.submit(1)
    wait_until(lambda: runner.pending() == 1)
    started = time.monotonic()
    assert runner.stop(timeout=0.2) is False
    # Far below the stage's 120 s hang, far above any scheduling delay: stop()
    # gave up at its timeout instead of waiting for the stage.
    assert time.monotonic() - started < 60
    hang.set()


def test_runner_needs_stages() -> None:
    with pytest.raises(ValueError):
        Runner(None, [], lambda *a: None)


def test_stalled_reports_a_stage_stuck_on_one_item() -> None:
    release = threading.Event()
    runner: Runner[None] = Runner(
        None,
        [Stage("fast", lambda c, x: x), Stage("stuck", lambda c, x: release.wait(10))],
        lambda *a: None,
    )
    runner.start()
    assert runner.stalled(0.05) == []
    runner.submit(1)
    wait_until(lambda: runner.stalled(0.05) == ["stuck"], timeout=5)
    assert runner.stalled(60) == []
    release.set()
    wait_until(lambda: runner.stalled(0.05) == [], timeout=5)
    runner.stop()


def _gated_group_runner(
    many: Any, fn: Any, errors: list[tuple[Any, str]], out: list[Any]
) -> tuple[Runner[None], threading.Event]:
    """A first stage held at a gate, so that the group stage finds a full queue."""
    gate = threading.Event()
    stages = [
        Stage("gate", lambda c, x: gate.wait(10) and x),
        Stage("group", fn, many=many, group=64),
        Stage("sink", lambda c, x: out.append(x)),
    ]
    runner: Runner[None] = Runner(
        None, stages, lambda c, item, stage, exc: errors.append((item, str(exc)))
    )
    runner.start()
    return runner, gate


def test_a_group_stage_takes_what_is_queued_at_once() -> None:
    groups: list[list[int]] = []
    errors: list[tuple[Any, str]] = []
    out: list[int] = []
    hold = threading.Event()

    def many(ctx: Any, items: list[int]) -> list[Any]:
        groups.append(list(items))
        hold.wait(10)  # the first call waits here while the rest queue up
        return [ValueError("odd") if x % 2 else x * 10 for x in items]

    def one(ctx: Any, x: int) -> int:
        return many(ctx, [x])[0]

    runner, gate = _gated_group_runner(many, one, errors, out)
    gate.set()
    for n in range(20):
        runner.submit(n)
    # The first call is held inside the stage; every other item waits in its queue.
    wait_until(lambda: groups and runner._lanes[1].queue.qsize() + len(groups[0]) == 20)
    hold.set()
    assert runner.stop(timeout=10)
    assert sorted(x for g in groups for x in g) == list(range(20))
    # What was queued while the first call ran came as one call: two calls at most.
    assert len(groups) <= 2 and max(len(g) for g in groups) >= 10
    assert sorted(out) == [n * 10 for n in range(0, 20, 2)]
    assert sorted(e[0] for e in errors) == list(range(1, 20, 2))


def test_a_failing_group_is_run_again_one_item_at_a_time() -> None:
    errors: list[tuple[Any, str]] = []
    out: list[int] = []

    def many(ctx: Any, items: list[int]) -> list[int]:
        raise RuntimeError("the group's write failed")

    def one(ctx: Any, x: int) -> int:
        if x == 3:
            raise ValueError("three is bad")
        return x

    runner, gate = _gated_group_runner(many, one, errors, out)
    for n in range(8):
        runner.submit(n)
    gate.set()
    assert runner.stop(timeout=10)
    assert sorted(out) == [0, 1, 2, 4, 5, 6, 7]
    assert errors == [(3, "three is bad")]


def test_a_group_answer_of_the_wrong_length_is_not_trusted() -> None:
    errors: list[tuple[Any, str]] = []
    out: list[int] = []
    runner, gate = _gated_group_runner(
        lambda c, items: items[:1], lambda c, x: x, errors, out
    )
    for n in range(6):
        runner.submit(n)
    gate.set()
    assert runner.stop(timeout=10)
    assert sorted(out) == list(range(6)) and errors == []


def test_a_group_that_reports_each_item_is_timed_per_item() -> None:
    """`stalled` means one item taking too long, also inside a group."""
    seen: list[list[str]] = []
    runner: Runner[None] | None = None

    def many(ctx: Any, items: list[int]) -> list[int]:
        assert runner is not None
        for _ in items:
            # This item has taken "too long" (0.5 s); the next one starts afresh.
            wait_until(lambda: runner.stalled(0.5) == ["group"], timeout=30)
            heartbeat()
            seen.append(runner.stalled(0.5))
        return items

    errors: list[tuple[Any, str]] = []
    runner, gate = _gated_group_runner(many, lambda c, x: many(c, [x])[0], errors, [])
    for n in range(2):
        runner.submit(n)
    gate.set()
    assert runner.stop(timeout=60)
    assert seen == [[], []] and errors == []
    heartbeat()  # off the runner's threads: nothing to restart, no error
