"""The staged runner: plain stage functions connected by bounded queues and threads.

A stage is `fn(ctx, item) -> item | None`; None means the item is finished. Each stage
has its own bounded queue and worker threads. An exception from a stage goes to
`on_error(ctx, item, stage_name, exc)` and the pipeline goes on with the next item.
`stop()` sends a sentinel through the stages in order, so queued work drains first.

A stage may also take what is queued as one group (`many(ctx, items) -> outcomes`,
one outcome per item: the next item, None, or the exception that item failed with),
so that a stage writing to the database pays one writer round trip per group
instead of one per item. If `many` itself raises, each item of the group is run
alone through `fn`, so one bad item fails alone.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from loguru import logger

C = TypeVar("C")
StageFn = Callable[[Any, Any], Any]
GroupFn = Callable[[Any, list[Any]], list[Any]]
ErrorHandler = Callable[[Any, Any, str, BaseException], None]
_SENTINEL = object()
_worker = threading.local()  # the lane a runner thread works for


@dataclass(frozen=True)
class Stage:
    """A named stage function and how many threads run it.

    With `many`, a worker takes up to `group` queued items at once (see the module
    docstring); `fn` still serves single items and the fallback.
    """

    name: str
    fn: StageFn
    workers: int = 1
    many: GroupFn | None = None
    group: int = 64


class _Lane:
    """One stage's queue, threads and a count of threads still running."""

    def __init__(self, stage: Stage, queue_size: int):
        self.stage = stage
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.threads: list[threading.Thread] = []
        self.running = stage.workers
        self.lock = threading.Lock()
        self.busy = 0
        self.started: dict[int, float] = {}  # thread id -> when its current item began


def heartbeat() -> None:
    """The calling stage thread has begun its next item: restart its stall clock.

    A group function calls it before each item, so that `stalled()` still means
    one item taking too long, not a group of them. A no-op off the runner's threads.
    """
    lane = getattr(_worker, "lane", None)
    if lane is not None:
        with lane.lock:
            lane.started[threading.get_ident()] = time.monotonic()


class Runner(Generic[C]):
    """Runs items through `stages` in order; see the module docstring."""

    def __init__(
        self,
        ctx: C,
        stages: list[Stage],
        on_error: ErrorHandler,
        queue_size: int = 1000,
    ):
        if not stages:
            raise ValueError("a runner needs at least one stage")
        self.ctx = ctx
        self.on_error = on_error
        self._lanes = [_Lane(stage, queue_size) for stage in stages]
        self._started = False
        self._stopping = False

    def start(self) -> None:
        for index, lane in enumerate(self._lanes):
            for n in range(lane.stage.workers):
                thread = threading.Thread(
                    target=self._work,
                    args=(index,),
                    name=f"stage-{lane.stage.name}-{n}",
                    daemon=True,
                )
                lane.threads.append(thread)
                thread.start()
        self._started = True

    def submit(self, item: Any, timeout: float | None = None) -> None:
        """Queue an item for the first stage; blocks while that queue is full."""
        if self._stopping:
            raise RuntimeError("runner is stopping")
        self._lanes[0].queue.put(item, timeout=timeout)

    def stop(self, timeout: float = 10) -> bool:
        """Drain and stop every stage; True when all threads ended within `timeout`."""
        if not self._started or self._stopping:
            return not self.is_alive()
        self._stopping = True
        deadline = time.monotonic() + timeout
        first = self._lanes[0]
        for _ in range(first.stage.workers):
            first.queue.put(_SENTINEL)
        for lane in self._lanes:
            for thread in lane.threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        return not self.is_alive()

    def is_alive(self) -> bool:
        """True while every worker thread runs (false after stop or a dead thread)."""
        return self._started and all(
            t.is_alive() for ln in self._lanes for t in ln.threads
        )

    def stalled(self, limit_seconds: float) -> list[str]:
        """Stages with an item in work for longer than `limit_seconds` (a hung stage)."""
        now = time.monotonic()
        hung = []
        for lane in self._lanes:
            with lane.lock:
                if any(now - t > limit_seconds for t in lane.started.values()):
                    hung.append(lane.stage.name)
        return hung

    def pending(self) -> int:
        """Items queued or being worked on across all stages."""
        return sum(lane.queue.qsize() + lane.busy for lane in self._lanes)

    def _work(self, index: int) -> None:
        lane = self._lanes[index]
        _worker.lane = lane
        while True:
            items, stop = self._take(lane)
            if items:
                self._handle(index, lane, items)
            if stop:
                self._worker_done(index)
                return

    def _take(self, lane: _Lane) -> tuple[list[Any], bool]:
        """The next item, or for a group stage its share of what is queued.

        The share (queued / workers, at most `group`) keeps every worker busy.
        """
        first = lane.queue.get()
        if first is _SENTINEL:
            return [], True
        items = [first]
        share = 1 + lane.queue.qsize() // lane.stage.workers
        limit = min(lane.stage.group, share) if lane.stage.many is not None else 1
        while len(items) < limit:
            try:
                item = lane.queue.get_nowait()
            except queue.Empty:
                break
            if item is _SENTINEL:
                return items, True
            items.append(item)
        return items, False

    def _handle(self, index: int, lane: _Lane, items: list[Any]) -> None:
        me = threading.get_ident()
        with lane.lock:
            lane.busy += len(items)
            lane.started[me] = time.monotonic()
        try:
            for out in self._outcomes(lane.stage, items):
                if out is not None and index + 1 < len(self._lanes):
                    self._lanes[index + 1].queue.put(out)
        finally:
            with lane.lock:
                lane.busy -= len(items)
                lane.started.pop(me, None)

    def _outcomes(self, stage: Stage, items: list[Any]) -> list[Any]:
        if stage.many is None or len(items) == 1:
            return [self._run(stage, item) for item in items]
        try:
            outcomes = stage.many(self.ctx, items)
            if len(outcomes) != len(items):
                raise ValueError(f"{len(outcomes)} outcomes for {len(items)} items")
        except Exception:
            logger.bind(event="stage_error").opt(exception=True).debug(
                "group of {} failed in stage {}: each item alone",
                len(items),
                stage.name,
            )
            return [self._run(stage, item) for item in items]
        results = []
        for item, out in zip(items, outcomes, strict=True):
            if isinstance(out, BaseException):
                self._failed(stage, item, out)
                out = None
            results.append(out)
        return results

    def _run(self, stage: Stage, item: Any) -> Any:
        try:
            return stage.fn(self.ctx, item)
        except Exception as exc:
            self._failed(stage, item, exc)
            return None

    def _failed(self, stage: Stage, item: Any, exc: BaseException) -> None:
        try:
            self.on_error(self.ctx, item, stage.name, exc)
        except Exception:
            logger.bind(event="stage_error").exception(
                "error handler failed in stage {}", stage.name
            )

    def _worker_done(self, index: int) -> None:
        """The last worker of a stage to see the sentinel passes it on to the next."""
        lane = self._lanes[index]
        with lane.lock:
            lane.running -= 1
            last = lane.running == 0
        if last and index + 1 < len(self._lanes):
            nxt = self._lanes[index + 1]
            for _ in range(nxt.stage.workers):
                nxt.queue.put(_SENTINEL)
