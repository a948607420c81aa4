"""Child process for the permission test: run as an unprivileged user (root reads
any file whatever its mode), it fails on a chmod-ed file and folder, the parent's
chmod fixes them, and automatic retries finish the work.

usage: retry_child.py ROOT   (prints one JSON object: what it saw at each step)
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from daemon.config import ensure_folders, validate
from pipeline import batch as batches
from pipeline import retry, sort
from pipeline.context import Context, Roots
from pipeline.db import Writer, open_database
from pipeline.fsops import Mover
from pipeline.models import Batch, File, utcnow
from pipeline.stages import intake_stages, run_inline
from tests.conftest import base_config


def snapshot() -> dict[str, Any]:
    rows = File.select().order_by(File.id)
    return {
        "files": [[r.rel_path, r.status, r.error_stage, r.error] for r in rows],
        "batches": [[b.status, b.last_error] for b in Batch.select()],
    }


def main() -> None:
    root = Path(sys.argv[1])
    settings = validate(
        base_config(root, intake={"media_only": False}, retry={"backoff_seconds": 1})
    )
    ensure_folders(settings)
    writer = Writer(open_database(Path(settings.database.path)))
    slots = threading.BoundedSemaphore(2)
    ctx = Context(
        settings=settings,
        roots=Roots.from_settings(settings.paths),
        writer=writer,
        mover=Mover(writer, fs_slots=slots),
        fs_slots=slots,
    )
    now = [utcnow()]
    ctx.clock = lambda: now[0]
    seen: dict[str, Any] = {}
    locked = ctx.roots.inbox / "locked.bin"
    locked.write_bytes(b"a photo the owner forgot to share\n")
    locked.chmod(0o000)
    (ctx.roots.inbox / "open.bin").write_bytes(b"another file\n")
    for path in sorted(ctx.roots.inbox.iterdir()):
        run_inline(ctx, intake_stages(ctx), path)
    seen["unreadable"] = snapshot()
    locked.chmod(0o644)  # the fix; its mtime does not change
    now[0] += timedelta(minutes=1)
    seen["retried_in"] = retry.run_due(ctx)
    seen["readable"] = snapshot()

    made = batches.create_batch(ctx)
    assert made is not None
    ctx.roots.sorted_dir.chmod(0o555)
    sort.sort_batch(ctx, made)
    seen["library_locked"] = snapshot()
    ctx.roots.sorted_dir.chmod(0o755)
    now[0] += timedelta(minutes=1)
    seen["retried_sort"] = retry.run_due(ctx)
    seen["sorted"] = snapshot()
    writer.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
