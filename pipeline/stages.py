"""The intake pipeline's stage list, in order, and what happens to a failing item."""

from __future__ import annotations

from typing import Any

from loguru import logger

from pipeline.context import Context
from pipeline.dedup import dedup_item
from pipeline.failures import errno_of, record_failure
from pipeline.hash_stage import hash_item
from pipeline.intake import Item, register
from pipeline.models import FileStatus
from pipeline.runner import Stage


def intake_stages(ctx: Context) -> list[Stage]:
    """register → hash (bounded by max_parallel_fs_ops) → dedup.

    register and dedup wait for a database commit per file; with several threads their
    writes share one transaction (one fsync) instead of queueing one commit at a time.
    Both decide on the single writer thread, so more threads never race.
    """
    workers = ctx.settings.system.max_parallel_fs_ops
    return [
        Stage("register", register, workers=workers),
        Stage("hash", hash_item, workers=workers),
        Stage("dedup", dedup_item, workers=workers),
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
