"""Logging through loguru: JSON lines to the log file, plain text to stderr (journald).

Context fields (`event`, `file_id`, `batch_id`, `duration_ms`, `status`) come from
`logger.bind(...)`. Secrets registered with `add_secret` are scrubbed from every message.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from loguru import logger

LOG_NAME = "media-pipeline.log"
CONTEXT_FIELDS = ("event", "file_id", "batch_id", "duration_ms", "status")
_secrets: set[str] = set()


def add_secret(value: str) -> None:
    """Never let `value` reach a log line (keys shorter than 4 chars are not scrubbed)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by ********."""
    for secret in _secrets:
        text = text.replace(secret, "********")
    return text


def _patch(record: Any) -> None:
    record["message"] = scrub(record["message"])


def _stderr_format(record: Any) -> str:
    fields = " ".join(
        f"{k}={record['extra'][k]}" for k in CONTEXT_FIELDS if k in record["extra"]
    )
    suffix = f" [{fields}]" if fields else ""
    return (
        "{level: <7} {name}: {message}"
        + suffix.replace("{", "{{").replace("}", "}}")
        + "\n{exception}"
    )


def setup(log_dir: Path | None, level: str = "INFO", rotation_mb: float = 10) -> None:
    """Configure sinks: stderr always, JSON file in `log_dir` when given."""
    logger.remove()
    logger.configure(patcher=_patch)
    logger.add(
        sys.stderr, level=level, format=_stderr_format, backtrace=False, diagnose=False
    )
    if log_dir is not None:
        logger.add(
            str(Path(log_dir) / LOG_NAME),
            level=level,
            serialize=True,
            rotation=int(rotation_mb * 1024 * 1024),
            enqueue=True,
            backtrace=False,
            diagnose=False,
        )
