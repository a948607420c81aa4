"""The staged runner: plain stage functions connected by bounded queues and threads.

A stage is `fn(ctx, item) -> item | None`; None means the item is finished. Each stage
has its own bounded queue and worker threads. An exception from a stage goes to
`on_error(ctx, item, stage_name, exc)` and the pipeline goes on with the next item.
`stop()` sends a sentinel through the stages in order, so queued work drains first.
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
ErrorHandler = Callable[[Any, Any, str, BaseException], None]
_SENTINEL = object()


@dataclass(frozen=True)
class Stage:
    """A named stage function and how many threads run it."""

    name: str
    fn: StageFn
    workers: int = 1


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
        while True:
            item = lane.queue.get()
            if item is _SENTINEL:
                self._worker_done(index)
                return
            me = threading.get_ident()
            with lane.lock:
                lane.busy += 1
                lane.started[me] = time.monotonic()
            try:
                out = self._run(lane.stage, item)
                if out is not None and index + 1 < len(self._lanes):
                    self._lanes[index + 1].queue.put(out)
            finally:
                with lane.lock:
                    lane.busy -= 1
                    lane.started.pop(me, None)

    def _run(self, stage: Stage, item: Any) -> Any:
        try:
            return stage.fn(self.ctx, item)
        except Exception as exc:
            try:
                self.on_error(self.ctx, item, stage.name, exc)
            except Exception:
                logger.bind(event="stage_error").exception(
                    "error handler failed in stage {}", stage.name
                )
            return None

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
