"""What every stage receives: settings, folder roots and the injected boundaries."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path

from pipeline.alerts import Alerts
from pipeline.db import Writer
from pipeline.fsops import Mover
from pipeline.models import utcnow
from pipeline.nearindex import NearIndex
from pipeline.settings import PathsSettings, Settings
from pipeline.syncthing import SyncthingClient


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
    def from_settings(cls, paths: PathsSettings) -> Roots:
        return cls(
            **{name: Path(getattr(paths, name)) for name in cls.__dataclass_fields__}
        )


# The configured folders by name, in one place: everything else derives from Roots.
FOLDERS: tuple[str, ...] = tuple(f.name for f in fields(Roots))


@dataclass
class Shared:
    """Locks and caches the stages share, owned by one daemon's Context.

    Module globals would be shared by every Context in the process: a test's daemon
    could then wait on a lock another test left held, or see its rescan times.
    """

    batch_lock: threading.Lock = field(default_factory=threading.Lock)
    sync_lock: threading.Lock = field(default_factory=threading.Lock)
    cleanup_lock: threading.Lock = field(default_factory=threading.Lock)
    # One sort at a time: a sort job and the sort a retry runs may pick one batch.
    sort_lock: threading.Lock = field(default_factory=threading.Lock)
    # Wall time of the last PRAGMA optimize (cleanup).
    last_optimize: float = -math.inf
    # Batch id -> monotonic time of its last rescan request; batches due for one.
    rescanned_at: dict[int, float] = field(default_factory=dict)
    rescans_due: set[int] = field(default_factory=set)


@dataclass
class Context:
    """Shared by all stages. `settings` is the validated config."""

    settings: Settings
    roots: Roots
    writer: Writer
    mover: Mover
    fs_slots: threading.Semaphore
    clock: Callable[[], datetime] = utcnow
    near_index: NearIndex | None = None
    syncthing: SyncthingClient | None = None
    shared: Shared = field(default_factory=Shared)
    # Owner notifications (daemon-wired); None in tests that do not need them.
    alerts: Alerts | None = None
