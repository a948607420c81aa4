"""Start-up of a library that already has rows: nothing waits for a full-table read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline import stats
from tests.conftest import add_file, wait_until

FLAT = 0  # a flat image's hash: never a reference
H = 0x0F0F_0F0F_F0F0_F0F0


def log_records(svc: Any) -> list[dict[str, Any]]:
    path = Path(svc.settings.paths.log_dir) / "media-pipeline.log"
    return [json.loads(line)["record"] for line in path.read_text().splitlines()]


def test_restart_loads_the_near_index_and_checks_the_counters(service: Any) -> None:
    svc = service()
    keep = add_file(
        svc, "a.jpg", "SORTED", 10, phash=H - (1 << 64) if H >= 1 << 63 else H
    )
    add_file(svc, "flagged.jpg", "SORTED", 10, phash=H ^ 1, near_duplicate_of=keep)
    add_file(svc, "flat.jpg", "UNIQUE", 10, phash=FLAT)
    add_file(svc, "copy.jpg", "DUPLICATE", 10, phash=H)
    svc.stop()

    svc = service()
    index = svc.ctx.near_index
    assert index.wait_ready(10)
    assert len(index) == 1 and index.nearest(H ^ 0b111, 6) == (keep, 3)
    wait_until(lambda: not svc._counter_check.is_alive())
    records = log_records(svc)
    ready = [r for r in records if r["extra"].get("status") == "ready"][-1]
    assert ready["extra"]["duration_ms"] >= 0
    assert {"database", "recovery", "scheduler"} <= set(ready["extra"]["steps"])
    checked = [r for r in records if r["extra"].get("event") == "stats"]
    assert checked and "in step" in checked[-1]["message"]
    con = svc.ctx.writer.db
    assert stats.differences(con) == []
