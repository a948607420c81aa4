"""`media-pipeline status`: the waiting line and the mtime-dated count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from daemon import cli
from tests.conftest import write_config


def test_waiting_line_reads_like_the_spec() -> None:
    at = datetime.now(UTC).replace(hour=22, minute=41, second=0, microsecond=0)
    wait = {
        "files": 102,
        "bytes": 31 * 1024**2,
        "next_batch_at": at.replace(tzinfo=None).isoformat() + "Z",
        "max_bytes": 10 * 1024**3,
    }
    line = cli.waiting_line(wait)
    local = at.astimezone().strftime("%H:%M")
    assert line.startswith("102 files (31 MB) waiting for a batch — next at ")
    assert line.endswith(f"{local} or at 10 GB") and local in line
    assert cli.waiting_line(wait | {"next_batch_at": None}) == (
        "102 files (31 MB) waiting for a batch — next at 10 GB"
    )
    assert cli.waiting_line({"files": 0, "bytes": 0}) == (
        "0 files (0 B) waiting for a batch"
    )
    tomorrow = (datetime.now(UTC) + timedelta(days=2)).replace(tzinfo=None)
    assert "-" in cli.local_time(tomorrow.isoformat() + "Z")


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"), (31 * 1024**2, "31 MB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert cli.human_bytes(n) == text


def test_status_command_prints_waiting_and_mtime_counts(
    service: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import add_file

    svc = service(batch={"auto_create": True, "max_age_seconds": 600})  # type: ignore[operator]
    add_file(svc, "a.jpg", "UNIQUE", 2048)
    add_file(svc, "b.jpg", "SORTED", 10, capture_source="mtime")
    config = write_config(tmp_path, batch={"auto_create": True})
    assert cli.main(["status", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "1 files (2 KB) waiting for a batch — next at " in out
    assert "dated only by file mtime: 1" in out
    assert cli.main(["status", "--json", "-c", str(config)]) == 0
    assert '"mtime_dated": 1' in capsys.readouterr().out
