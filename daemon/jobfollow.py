"""Following a job of the running daemon: progress lines, then a one-line summary."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import httpx

from pipeline.states import JobStatus

POLL_FIRST, POLL_MAX = 0.1, 1.0
LOST_AFTER_SECONDS = 30.0  # the daemon unreachable this long: stop following
PROGRESS_EVERY_SECONDS = 5.0  # progress lines when stderr is not a terminal


class Follower:
    """Polls GET /api/jobs/{id} until the job ends; a progress line meanwhile."""

    def __init__(
        self,
        client: httpx.Client,
        kind: str,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.kind = kind
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.sleep = sleep
        self.clock = clock
        self.tty = self.err.isatty()
        self._shown = ""
        self._shown_at = -PROGRESS_EVERY_SECONDS

    def follow(self, job: dict[str, Any]) -> int:
        """Exit code: 0 DONE without errors, 1 FAILED or with errors, 130 on Ctrl-C."""
        delay = POLL_FIRST
        lost_since: float | None = None
        try:
            while job.get("status") not in (JobStatus.DONE, JobStatus.FAILED):
                self.progress(job)
                self.sleep(delay)
                delay = min(POLL_MAX, delay * 2)
                try:
                    answer = self.client.get(f"/api/jobs/{job['id']}")
                    answer.raise_for_status()
                    job = answer.json()["data"]["job"]
                    lost_since = None
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    lost_since = lost_since or self.clock()
                    if self.clock() - lost_since >= LOST_AFTER_SECONDS:
                        self.clear()
                        print(
                            f"{self.kind}: lost the daemon while following job "
                            f"{job['id']} ({type(exc).__name__})",
                            file=self.err,
                        )
                        return 1
        except KeyboardInterrupt:
            self.clear()
            print(
                f"{self.kind}: stopped following; job {job['id']} goes on in the daemon",
                file=self.err,
            )
            return 130
        self.clear()
        print(summarize(self.kind, {"job": job}), file=self.out)
        failed = job["status"] == JobStatus.FAILED or bool(job.get("errors"))
        return 1 if failed else 0

    def progress(self, job: dict[str, Any]) -> None:
        line = progress_line(self.kind, job)
        if self.tty:
            print(f"\r{line}\x1b[K", end="", file=self.err, flush=True)
            self._shown = line
        elif line != self._shown and (
            self.clock() - self._shown_at >= PROGRESS_EVERY_SECONDS
        ):
            print(line, file=self.err, flush=True)
            self._shown, self._shown_at = line, self.clock()

    def clear(self) -> None:
        if self.tty and self._shown:
            print("\r\x1b[K", end="", file=self.err, flush=True)


def progress_line(kind: str, job: dict[str, Any]) -> str:
    """`sort: 45/102 (44 %), 0 errors` while a job runs."""
    total, done = job.get("total") or 0, job.get("done") or 0
    if not total:
        return f"{kind}: {str(job.get('status', JobStatus.RUNNING)).lower()}…"
    errors = job.get("errors") or 0
    return f"{kind}: {done}/{total} ({job.get('progress', 0):.0f} %), {errors} errors"


def _seconds(job: dict[str, Any]) -> str:
    try:
        start = datetime.fromisoformat(job["started_at"].removesuffix("Z"))
        end = datetime.fromisoformat(job["finished_at"].removesuffix("Z"))
    except (KeyError, AttributeError, TypeError, ValueError):
        return ""
    return f" in {(end - start).total_seconds():.1f} s"


def _megabytes(size: int | None) -> str:
    return f"{(size or 0) / 1e6:.1f} MB"


def summarize(kind: str, data: dict[str, Any]) -> str:
    """The one summary line of `trigger KIND` from the daemon's answer or final job."""
    job = data.get("job")
    if isinstance(job, dict):
        return _job_summary(kind, job)
    if kind == "batch":
        made = data.get("batch")
        if not made:
            return "batch: nothing waits for a batch"
        return (
            f"batch: {made['name']} created, {made['file_count']} files "
            f"({_megabytes(made.get('size_bytes'))})"
        )
    if kind == "sync":
        moved = data.get("batches") or []
        names = ", ".join(b["name"] for b in moved)
        return f"sync: {len(moved)} batches handed to Syncthing" + (
            f" ({names})" if names else ""
        )
    if kind == "cleanup":
        actions = data.get("actions") or []
        done = [a for a in actions if a.get("action") != "skip"]
        by: dict[str, int] = {}
        for action in done:
            by[action["action"]] = by.get(action["action"], 0) + 1
        detail = ", ".join(f"{n} {name}" for name, n in sorted(by.items()))
        skipped = len(actions) - len(done)
        return (
            f"cleanup: {len(done)} actions"
            + (f" ({detail})" if detail else "")
            + f", {skipped} left in place"
        )
    return f"{kind}: {json.dumps(data)}"


def _job_summary(kind: str, job: dict[str, Any]) -> str:
    took = _seconds(job)
    if job.get("status") == JobStatus.FAILED:
        return f"{kind}: FAILED{took}: {job.get('message') or 'see the daemon log'}"
    result = job.get("result") or {}
    if kind == "sort" and "batches" in result:
        reports = result["batches"]
        if result.get("dry_run"):
            planned = sum(len(r.get("planned", [])) for r in reports)
            return f"sort (dry run): {planned} files planned, nothing moved{took}"
        sorted_ = sum(r.get("sorted", 0) for r in reports)
        dups = sum(r.get("duplicates", 0) for r in reports)
        errors = sum(r.get("errors", 0) for r in reports)
        dup_text = f", {dups} duplicates" if dups else ""
        return f"sort: {sorted_} sorted{dup_text}, {errors} errors{took}"
    if kind == "sync" and "handed_over" in result:
        handed, rescanned = len(result["handed_over"]), len(result["rescanned"])
        return (
            f"sync: {handed} batches handed to Syncthing, {rescanned} rescanned, "
            f"{job.get('errors') or 0} errors{took}"
        )
    if kind == "dedup" and "found" in result:
        text = (
            f"dedup: {result['found']} files in the inbox, "
            f"{result.get('processed', 0)} taken: {result.get('unique', 0)} unique, "
            f"{result.get('duplicates', 0)} duplicates, "
            f"{result.get('skipped', 0)} skipped, {result.get('errors', 0)} errors"
        )
        if result.get("arriving"):
            text += f"; {result['arriving']} still arriving, left for the watcher"
        return text + took
    done, errors = job.get("done") or 0, job.get("errors") or 0
    return f"{kind}: done, {done} items, {errors} errors{took}"


def json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"status": "error", "message": response.text[:500]}
