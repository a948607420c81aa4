"""Logging through loguru: JSON lines to the log file, plain text to stderr (journald).

Context fields (`event`, `file_id`, `batch_id`, `duration_ms`, `status`) come from
`logger.bind(...)`. Secrets registered with `add_secret` are scrubbed from every
message, bound field and exception text; control characters (a file name may hold a
newline or a terminal escape) are escaped, so no input can forge a journal line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from loguru import logger

LOG_NAME = "media-pipeline.log"
CONTEXT_FIELDS = ("event", "file_id", "batch_id", "duration_ms", "status")
_secrets: set[str] = set()
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_PLAIN = (int, float, bool, type(None))


def add_secret(value: str) -> None:
    """Never let `value` reach a log line (keys shorter than 4 chars are not scrubbed)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def scrub(text: str) -> str:
    """`text` with every registered secret replaced by ********."""
    for secret in _secrets:
        text = text.replace(secret, "********")
    return text


def escape_controls(text: str) -> str:
    """`text` on one line: control characters as `\\n`, `\\x1b`, `\\u2028`, …"""
    return _CONTROLS.sub(_escape_one, text)


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """What may reach a log line: secrets scrubbed, control characters escaped."""
    return escape_controls(scrub(text))


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not break logging
        return f"<{type(exc).__name__}>"


def scrub_exception(exc: BaseException | None, depth: int = 0) -> BaseException | None:
    """`exc`, or a stand-in with the same name and traceback whose text is clean.

    The chain (`__cause__`, `__context__`) is cleaned too; loguru prints all of it.
    """
    if exc is None or depth > 20:
        return exc
    cause = scrub_exception(exc.__cause__, depth + 1)
    context = scrub_exception(exc.__context__, depth + 1)
    text = _safe_str(exc)
    cleaned = clean(text)
    if cleaned == text and cause is exc.__cause__ and context is exc.__context__:
        return exc
    cls = type(exc)
    stand_in_type = type(
        cls.__name__,
        (Exception,),
        {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__str__": lambda self: cleaned,
        },
    )
    stand_in = stand_in_type(cleaned)
    stand_in.__cause__ = cause
    stand_in.__context__ = context
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in.with_traceback(exc.__traceback__)


def _patch(record: Any) -> None:
    record["message"] = clean(record["message"])
    extra = record["extra"]
    for key, value in list(extra.items()):
        if isinstance(value, str):
            extra[key] = clean(value)
        elif not isinstance(value, _PLAIN):
            text = str(value)
            if clean(text) != text:
                extra[key] = clean(text)
    found = record["exception"]
    if found is not None and found.value is not None:
        value = scrub_exception(found.value)
        if value is not found.value:
            # The type stays the real one: it names the error, and the file sink's
            # queue must be able to pickle it (the stand-in instance need not be).
            record["exception"] = found._replace(value=value)


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
