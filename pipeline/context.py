"""What every stage receives: settings, folder roots and the injected boundaries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.db import Writer
from pipeline.fsops import Mover
from pipeline.models import utcnow


@dataclass(frozen=True)
class Roots:
    """The configured folders; nothing is read or written outside them."""

    inbox: Path
    duplicates_dir: Path
    batch_dir: Path
    sync_dir: Path
    sorted_dir: Path
    temp_dir: Path
    log_dir: Path

    @classmethod
    def from_settings(cls, paths: Any) -> Roots:
        return cls(
            **{name: Path(getattr(paths, name)) for name in cls.__dataclass_fields__}
        )


# The configured folders by name, in one place: everything else derives from Roots.
FOLDERS: tuple[str, ...] = tuple(f.name for f in fields(Roots))


@dataclass
class Context:
    """Shared by all stages. `settings` is the validated config (attribute access)."""

    settings: Any
    roots: Roots
    writer: Writer
    mover: Mover
    fs_slots: threading.Semaphore
    clock: Callable[[], datetime] = utcnow
    near_index: Any = None
    syncthing: Any = None
