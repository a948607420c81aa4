"""`trigger` follows its job: progress lines, one summary line, no give-up while it runs.

The daemon side is a fake transport here so that minutes of a running job pass in a
test; tests/integration/test_daemon.py runs the same command against the real daemon.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import httpx

from daemon.cli import Follower, progress_line, summarize


class Clock:
    """A monotonic clock that `sleep` moves forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def job(status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    return {
        "id": 7,
        "kind": "sort",
        "status": status,
        "started_at": "2026-11-30T22:00:00.000000Z",
        "finished_at": None,
        "total": 102,
        "done": 0,
        "progress": 0.0,
        "errors": 0,
        "message": None,
        "result": None,
        **extra,
    }


def follower(
    answer: Callable[[httpx.Request], httpx.Response], clock: Clock
) -> tuple[Follower, io.StringIO, io.StringIO]:
    client = httpx.Client(
        base_url="http://127.0.0.1:1", transport=httpx.MockTransport(answer)
    )
    out, err = io.StringIO(), io.StringIO()
    return (
        Follower(client, "sort", out=out, err=err, sleep=clock.sleep, clock=clock),
        out,
        err,
    )


def ok(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"status": "ok", "data": data})


DONE = job(
    "DONE",
    done=102,
    progress=100.0,
    finished_at="2026-11-30T22:00:01.200000Z",
    result={
        "dry_run": False,
        "batches": [
            {"batch": "batch_000001", "sorted": 60, "duplicates": 0, "errors": 0},
            {"batch": "batch_000002", "sorted": 42, "duplicates": 0, "errors": 0},
        ],
    },
)


def test_follows_a_long_job_to_its_summary_without_giving_up() -> None:
    clock = Clock()
    polls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        polls.append(request.url.path)
        if clock.now < 300:  # five minutes of running, far past any 30 s limit
            done = min(101, int(clock.now / 3))
            return ok({"job": job(done=done, progress=100 * done / 102)})
        return ok({"job": DONE})

    follow, out, err = follower(answer, clock)
    assert follow.follow(job()) == 0
    assert set(polls) == {"/api/jobs/7"}
    assert out.getvalue() == "sort: 102 sorted, 0 errors in 1.2 s\n"
    lines = err.getvalue().splitlines()
    assert lines[0] == "sort: 0/102 (0 %), 0 errors"
    assert 30 <= len(lines) <= 70  # a line every ~5 s, not one per poll
    assert all(line.startswith("sort: ") for line in lines)


def test_failed_job_or_file_errors_exit_1() -> None:
    clock = Clock()
    failed = job("FAILED", finished_at="2026-11-30T22:00:02Z", message="disk gone")
    follow, out, _ = follower(lambda r: ok({"job": failed}), clock)
    assert follow.follow(job()) == 1
    assert out.getvalue() == "sort: FAILED in 2.0 s: disk gone\n"
    with_errors = {**DONE, "errors": 2}
    with_errors["result"] = {
        "dry_run": False,
        "batches": [{"sorted": 100, "duplicates": 0, "errors": 2}],
    }
    follow, out, _ = follower(lambda r: ok({"job": with_errors}), clock)
    assert follow.follow(job()) == 1
    assert out.getvalue().startswith("sort: 100 sorted, 2 errors")


def test_a_daemon_that_stays_away_ends_the_follow() -> None:
    clock = Clock()

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    follow, _, err = follower(down, clock)
    assert follow.follow(job()) == 1
    assert "lost the daemon while following job 7" in err.getvalue()
    assert 30 <= clock.now <= 40


def test_a_short_outage_is_ridden_out() -> None:
    clock = Clock()

    def flaky(request: httpx.Request) -> httpx.Response:
        if clock.now < 10:
            raise httpx.ConnectError("restarting", request=request)
        return ok({"job": DONE})

    follow, out, _ = follower(flaky, clock)
    assert follow.follow(job()) == 0
    assert out.getvalue().startswith("sort: 102 sorted")


def test_ctrl_c_leaves_the_job_running() -> None:
    clock = Clock()

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    follow, _, err = follower(lambda r: ok({"job": job()}), clock)
    follow.sleep = interrupted
    assert follow.follow(job()) == 130
    assert "job 7 goes on in the daemon" in err.getvalue()


def test_summaries_of_every_trigger() -> None:
    assert progress_line("dedup", {"status": "RUNNING", "total": 0}) == (
        "dedup: running…"
    )
    scan = job(
        "DONE",
        kind="dedup",
        finished_at="2026-11-30T22:00:03.400000Z",
        result={
            "found": 120,
            "known": 20,
            "processed": 100,
            "unique": 90,
            "duplicates": 8,
            "skipped": 2,
            "errors": 0,
            "arriving": 1,
        },
    )
    assert summarize("dedup", {"job": scan}) == (
        "dedup: 120 files in the inbox, 100 taken: 90 unique, 8 duplicates, "
        "2 skipped, 0 errors; 1 still arriving, left for the watcher in 3.4 s"
    )
    dry = {**DONE, "result": {"dry_run": True, "batches": [{"planned": [{}, {}]}]}}
    assert summarize("sort", {"job": dry}) == (
        "sort (dry run): 2 files planned, nothing moved in 1.2 s"
    )
    made = {"name": "batch_000003", "file_count": 120, "size_bytes": 31_000_000}
    assert summarize("batch", {"batch": made}) == (
        "batch: batch_000003 created, 120 files (31.0 MB)"
    )
    assert summarize("batch", {"batch": None}) == "batch: nothing waits for a batch"
    assert summarize("sync", {"batches": [{"name": "batch_000001"}]}) == (
        "sync: 1 batches handed to Syncthing (batch_000001)"
    )
    actions = [
        {"action": "remove_temp"},
        {"action": "remove_temp"},
        {"action": "skip"},
    ]
    assert summarize("cleanup", {"actions": actions}) == (
        "cleanup: 2 actions (2 remove_temp), 1 left in place"
    )
    other = job("DONE", kind="cleanup", done=2, finished_at="2026-11-30T22:00:00.5Z")
    assert summarize("cleanup", {"job": other}) == (
        "cleanup: done, 2 items, 0 errors in 0.5 s"
    )
    result = {"handed_over": [4], "not_moved": [], "rescanned": [4, 2]}
    synced = {**job("DONE", kind="sync", finished_at="2026-11-30T22:00:00.5Z")}
    synced["result"] = result
    assert summarize("sync", {"job": synced}) == (
        "sync: 1 batches handed to Syncthing, 2 rescanned, 0 errors in 0.5 s"
    )
