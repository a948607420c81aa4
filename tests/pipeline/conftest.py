"""A pipeline context built from its parts, without the daemon around it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.config import ensure_folders, validate
from pipeline.context import Context, Roots
from pipeline.db import Writer, open_database
from pipeline.fsops import Mover
from pipeline.models import database_proxy
from pipeline.nearindex import NearIndex
from tests.conftest import base_config


@pytest.fixture
def make_ctx(tmp_path: Path) -> Iterator[Callable[..., Context]]:
    """Factory: a Context over a real SQLite file and folders under tmp_path.

    Overrides are config keys (as in `base_config`); the writer is closed afterwards.
    """
    writers: list[Writer] = []

    def make(**overrides: Any) -> Context:
        settings = validate(base_config(tmp_path, **overrides))
        ensure_folders(settings)
        writer = Writer(open_database(Path(settings.database.path)))
        writers.append(writer)
        slots = threading.BoundedSemaphore(settings.system.max_parallel_fs_ops)
        return Context(
            settings=settings,
            roots=Roots.from_settings(settings.paths),
            writer=writer,
            mover=Mover(writer, fs_slots=slots),
            fs_slots=slots,
            near_index=NearIndex(),
        )

    yield make
    for writer in writers:
        writer.close()
    database_proxy.initialize(None)


@pytest.fixture
def ctx(make_ctx: Callable[..., Context]) -> Context:
    """A Context with the test defaults (no Syncthing, nothing automatic)."""
    return make_ctx()


@pytest.fixture
def writer_calls(ctx: Context, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """[n]: the round trips made through ctx.writer.call; set it to [0] to restart."""
    calls = [0]
    real = ctx.writer.call

    def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(ctx.writer, "call", counted)
    return calls
