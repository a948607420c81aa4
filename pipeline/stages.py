"""The intake pipeline's stage list, in order, and what happens to a failing item."""

from __future__ import annotations

from typing import Any

from loguru import logger

from pipeline.context import Context
from pipeline.dedup import dedup_item, dedup_many
from pipeline.failures import errno_of, record_failure
from pipeline.hash_stage import hash_item, hash_many
from pipeline.intake import Item, register, register_many
from pipeline.models import FileStatus
from pipeline.runner import Stage


def intake_stages(ctx: Context) -> list[Stage]:
    """register → hash (bounded by max_parallel_fs_ops) → dedup.

    Each stage takes what is queued as a group and writes it in one writer round
    trip: per file that costs a few statements, not a commit and two thread
    hand-offs. register and dedup decide on the single writer thread, so they never
    race; one thread each is enough for them.
    """
    workers = ctx.settings.system.max_parallel_fs_ops
    return [
        Stage("register", register, many=register_many),
        # A hashed file waits for the rest of its group before it goes on, so the
        # group stays modest; hash_many records long groups as it goes.
        Stage("hash", hash_item, workers=workers, many=hash_many, group=32),
        Stage("dedup", dedup_item, many=dedup_many),
    ]


def record_error(ctx: Context, item: Any, stage: str, exc: BaseException) -> None:
    """A failing item becomes ERROR in `stage`; its file stays where it is.

    A failure that may pass (see pipeline/failures.py) is retried automatically.
    """
    message = str(exc) or type(exc).__name__
    if not isinstance(item, Item):
        logger.bind(event=stage, status=FileStatus.ERROR).error(
            "{} failed: {}: {}", item, stage, message
        )
        return
    record_failure(
        ctx, item.file_id, stage, message, errno_of(exc), only_from=_FAILABLE
    )


# Only a file still on its way through intake becomes ERROR here: one that dedup
# has already set aside (DUPLICATE) or intake left alone (SKIPPED) keeps its status.
_FAILABLE = (FileStatus.NEW, FileStatus.HASHED, FileStatus.UNIQUE, FileStatus.ERROR)


def run_inline(ctx: Context, stages: list[Stage], item: Any) -> Any:
    """Push one item through `stages` on the calling thread (scan jobs, tests)."""
    for stage in stages:
        try:
            item = stage.fn(ctx, item)
        except Exception as exc:
            record_error(ctx, item, stage.name, exc)
            return None
        if item is None:
            return None
    return item
