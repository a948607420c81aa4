"""What the web layer is handed by the daemon: the pipeline context and a few ports."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.context import Context
from pipeline.jobs import Jobs


class ConfigPort(Protocol):
    """Reading and changing the config file (implemented by the daemon)."""

    def masked(self) -> dict[str, Any]: ...

    def update(self, patch: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Apply a patch; returns (new masked config, restart_required keys).

        Raises ValueError whose args[0] is a list of `key: problem` lines.
        """
        ...


@dataclass
class AppState:
    ctx: Context
    jobs: Jobs
    version: str
    config: ConfigPort
    components: Callable[[], dict[str, str]]
    submit: Callable[[Path], None] | None = None
    started: float = field(default_factory=time.monotonic)
    api_key: Callable[[], str] = lambda: ""
    auth_enabled: Callable[[], bool] = lambda: False
