"""The running service retries by itself: a full library, then space, then sorted."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from typing import Any

from pipeline.models import Batch, BatchStatus, File, FileStatus
from tests.conftest import wait_until


def test_a_full_library_empties_its_errors_by_itself_once_space_is_added(
    service: Any, small_disk: Any
) -> None:
    disk = small_disk("library")
    svc = service(
        paths={"sorted_dir": str(disk.path)},
        intake={"media_only": False},
        batch={"auto_create": True, "max_age_seconds": 0},
        sort={"auto": True},
        retry={"backoff_seconds": 0.5, "max_attempts": 20},
    )
    disk.wants_copy(svc.ctx)
    contents = [random.Random(i).randbytes(300 * 1024) for i in range(6)]
    for i, data in enumerate(contents):
        path = svc.ctx.roots.inbox / f"f{i}.bin"
        path.write_bytes(data)
        svc.submit(path)

    # Batched and sorted by the timers; what does not fit fails and is retried.
    wait_until(
        lambda: File.select().where(File.status == FileStatus.ERROR).count()
        and not File.select().where(File.status == FileStatus.UNIQUE).count(),
        timeout=30,
    )
    wait_until(lambda: File.select().where(File.attempts > 0).count(), timeout=30)
    assert Batch.select().where(Batch.status == BatchStatus.SORTED).count() == 0

    disk.grow()
    wait_until(
        lambda: File.select().where(File.status == FileStatus.SORTED).count() == 6,
        timeout=60,
    )
    wait_until(
        lambda: Batch.select().where(Batch.status != BatchStatus.SORTED).count() == 0
    )
    found = Counter(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in disk.path.rglob("*")
        if p.is_file()
    )
    assert found == Counter(hashlib.sha256(c).hexdigest() for c in contents)
