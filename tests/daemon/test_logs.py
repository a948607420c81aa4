"""Log lines cannot be forged by a file name, and secrets never reach them."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from daemon import logs

SECRET = "st-key-" + "Q" * 24
EVIL = "IMG_1.jpg\nERROR   daemon.service: syncthing key is hunter2\r\x1b[2K\u2028.jpg"


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The daemon's own sinks (stderr and the JSON file); yields a reader of both."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    logs.setup(tmp_path, "DEBUG")
    logs.add_secret(SECRET)

    def read() -> tuple[list[str], list[dict[str, Any]]]:
        logger.complete()
        logs.setup(None, "DEBUG")  # closes the file sink, flushing its queue
        err = stderr.getvalue().splitlines()
        text = (tmp_path / logs.LOG_NAME).read_text(encoding="utf-8")
        return err, [json.loads(line) for line in text.splitlines()]

    yield read
    monkeypatch.undo()
    logs.setup(None)


def test_a_file_name_cannot_forge_a_journal_line(logged: Any) -> None:
    logger.bind(event="intake", status=EVIL).info("took {} in", Path("/inbox") / EVIL)
    err, records = logged()
    assert len(err) == 1, "\n".join(
        err
    )  # one record, one line: journald sees no second entry
    assert err[0].startswith("INFO    ")
    assert "\\nERROR   daemon.service" in err[0] and "\\x1b[2K" in err[0]
    assert "\\u2028" in err[0] and "\x1b" not in err[0] and "\r" not in err[0]
    (record,) = records
    message = record["record"]["message"]
    assert "\n" not in message and message.endswith("\\r\\x1b[2K\\u2028.jpg in")
    assert "\n" not in record["record"]["extra"]["status"]


def test_secrets_are_scrubbed_from_exceptions_and_bound_fields(logged: Any) -> None:
    try:
        try:
            raise ValueError(f"bad key {SECRET}")
        except ValueError as inner:
            raise RuntimeError(f"Syncthing refused X-API-Key: {SECRET}") from inner
    except RuntimeError as exc:
        logger.bind(event="sync", status=f"key={SECRET}").opt(exception=exc).error(
            "request failed: {}", exc
        )
    logger.bind(event="sync", file_id=7, batch_id=None, detail={"k": SECRET}).warning(
        "plain"
    )
    err, records = logged()
    whole = "\n".join(err) + json.dumps(records)
    assert SECRET not in whole
    # The traceback is still there, with the exceptions' names and chain.
    assert "RuntimeError: Syncthing refused X-API-Key: ********" in whole
    assert "ValueError: bad key ********" in whole
    assert "The above exception was the direct cause" in whole
    first = records[0]["record"]
    assert first["exception"]["type"] == "RuntimeError"
    assert first["extra"]["status"] == "key=********"
    assert records[1]["record"]["extra"]["file_id"] == 7
