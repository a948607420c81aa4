"""The dedup job: scan the inbox for files not yet known, hash and de-duplicate them.

Like the watcher, the scan takes a file only once it has finished arriving: nothing
about it (content, size, metadata) changed for `watcher.settle_seconds`. A file still
being written is waited for, up to `max_wait`; one that keeps changing is left for the
watcher (or the next scan) and counted as `arriving`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.context import Context
from pipeline.intake import walk_inbox
from pipeline.jobs import JobHandle
from pipeline.models import FileStatus, database_proxy
from pipeline.stages import intake_stages, run_inline
from pipeline.store import file_status

SETTLED = (FileStatus.UNIQUE, FileStatus.ERROR)
# The longest a scan waits for files still arriving, at least: 60 s or 10 settle times.
MIN_WAIT_SECONDS = 60.0


def settled_paths(paths: list[str], statuses: tuple[str, ...] = SETTLED) -> set[str]:
    """Paths with a row in `statuses` whose file has not changed since it was seen.

    Raw SQL: the watcher asks this for every file of a folder moved into the inbox,
    and building the query through peewee cost over a millisecond per path.
    """
    if not paths:
        return set()
    sql = (
        "SELECT current_path, size, mtime_ns FROM files"
        f" WHERE current_path IN ({', '.join('?' * len(paths))})"
        f" AND status IN ({', '.join('?' * len(statuses))})"
    )
    rows = database_proxy.connection().execute(sql, (*paths, *statuses))
    settled = set()
    for path, size, mtime_ns in rows:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) == (size, mtime_ns):
            settled.add(path)
    return settled


def quiet_for(path: str, now: float) -> float | None:
    """Seconds since anything about the file last changed; None when it is gone.

    ctime, not mtime: every write and every metadata change moves it, and no tool
    can set it (a copy that keeps the source's old mtime is still caught).
    """
    try:
        return now - os.lstat(path).st_ctime
    except OSError:
        return None


def scan_inbox(
    ctx: Context,
    handle: JobHandle,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float | None = None,
) -> dict[str, Any]:
    """Walk the inbox and push every unknown, changed or unfinished file through the stages.

    Returns counts: `found` (files in the inbox), `known` (already settled),
    `processed`, and of those `unique`, `duplicates`, `skipped`, `errors`; `arriving`
    is what was still being written when the wait ran out.
    """
    paths = [
        str(p)
        for p in walk_inbox(ctx.roots.inbox, ctx.settings.watcher.ignore_patterns)
    ]
    known: set[str] = set()
    for start in range(0, len(paths), 500):
        known |= settled_paths(paths[start : start + 500])
    todo = [p for p in paths if p not in known]
    handle.set_total(len(todo))
    outcome = _Outcome()
    settle = ctx.settings.watcher.settle_seconds
    wait = max(MIN_WAIT_SECONDS, 10 * settle) if max_wait is None else max_wait
    deadline = clock() + wait
    stages = intake_stages(ctx)

    def one(path: str) -> None:
        item = run_inline(ctx, stages, path)
        status = outcome.record(path, item.file_id if item is not None else None)
        handle.advance(1, int(status == FileStatus.ERROR))

    with ThreadPoolExecutor(ctx.settings.system.max_parallel_fs_ops) as pool:
        while todo:
            now = clock()
            quiet = {p: quiet_for(p, now) for p in todo}
            ready = [p for p, q in quiet.items() if q is not None and q >= settle]
            gone = [p for p, q in quiet.items() if q is None]
            if gone:
                handle.advance(len(gone))
            list(pool.map(one, ready))
            todo = [p for p, q in quiet.items() if q is not None and q < settle]
            if not todo or clock() >= deadline:
                break
            # Sleep until the first of them could have settled (at least a moment).
            first = max(quiet[p] or 0.0 for p in todo)
            sleep(min(max(settle - first, 0.05), max(deadline - clock(), 0.0)))
    return {
        "found": len(paths),
        "known": len(known),
        "processed": outcome.processed,
        **outcome.counts,
        "arriving": len(todo),
    }


STATUS_AT_PATH = (
    "SELECT status FROM files WHERE current_path = ? ORDER BY id DESC LIMIT 1"
)


class _Outcome:
    """What became of each processed file (thread-safe)."""

    KEYS: dict[str, str] = {
        FileStatus.UNIQUE: "unique",
        FileStatus.DUPLICATE: "duplicates",
        FileStatus.SKIPPED: "skipped",
        FileStatus.ERROR: "errors",
    }

    def __init__(self) -> None:
        self.processed = 0
        self.counts = dict.fromkeys(self.KEYS.values(), 0)
        self._lock = threading.Lock()

    def record(self, path: str, file_id: int | None) -> str | None:
        """Count the file's status now: by its id, else by where it was (it stayed).

        Both lookups use an index: a scan over a big library costs the inbox, not
        the library, per file.
        """
        con = database_proxy.connection()
        if file_id is not None:
            status = file_status(con, file_id)
        else:
            row = con.execute(STATUS_AT_PATH, (path,)).fetchone()
            status = row[0] if row is not None else None
        with self._lock:
            self.processed += 1
            if status in self.KEYS:
                self.counts[self.KEYS[status]] += 1
        return status
