"""The dedup job: scan the inbox for files not yet known, hash and de-duplicate them."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pipeline.context import Context
from pipeline.intake import walk_inbox
from pipeline.jobs import JobHandle
from pipeline.models import File, FileStatus
from pipeline.stages import intake_stages, run_inline

SETTLED = (FileStatus.UNIQUE, FileStatus.ERROR)


def settled_paths(paths: list[str], statuses: tuple[str, ...] = SETTLED) -> set[str]:
    """Paths with a row in `statuses` whose file has not changed since it was seen."""
    rows = File.select(File.current_path, File.size, File.mtime_ns).where(
        File.current_path.in_(paths), File.status.in_(statuses)
    )
    settled = set()
    for row in rows:
        try:
            st = os.lstat(row.current_path)
        except OSError:
            continue
        if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
            settled.add(row.current_path)
    return settled


def scan_inbox(ctx: Context, handle: JobHandle) -> dict[str, Any]:
    """Walk the inbox and push every unknown, changed or unfinished file through the stages."""
    paths = [
        str(p)
        for p in walk_inbox(ctx.roots.inbox, ctx.settings.watcher.ignore_patterns)
    ]
    skip: set[str] = set()
    for start in range(0, len(paths), 500):
        skip |= settled_paths(paths[start : start + 500])
    todo = [p for p in paths if p not in skip]
    handle.set_total(len(todo))
    stages = intake_stages(ctx)
    lock = threading.Lock()
    processed = 0

    def one(path: str) -> None:
        nonlocal processed
        result = run_inline(ctx, stages, path)
        handle.advance(1)
        with lock:
            processed += result is not None

    with ThreadPoolExecutor(ctx.settings.system.max_parallel_fs_ops) as pool:
        list(pool.map(one, todo))
    return {"found": len(paths), "processed": processed, "skipped": len(skip)}
