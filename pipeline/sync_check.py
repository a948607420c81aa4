"""Decide, through Syncthing's REST API, whether a batch is held by every device.

Pure apart from the client calls: no database, no file-system access. The caller
passes the batch's files with their sizes on disk and records the verdict; client
exceptions (``SyncthingError`` and subclasses) propagate so the caller can store
``last_error`` and retry later.

The cost of one check grows with the batch, never with the library: one
``/rest/db/file`` request per batch file plus two or three fixed ones. Neither
``/rest/db/completion`` (Syncthing 1.19 answers 100 % for a device whose index is
still empty) nor ``/rest/db/remoteneed`` is used: with the documented remote set-up
(Receive Only, ``ignoreDelete``) every file ever sorted out of ``sync_dir`` stays in
the remote's need list as a deleted entry, so paging it costs O(library) per poll,
and offset paging over a list that changes between pages can skip the one entry
that matters. A batch is synced only when

1. every required device is configured in Syncthing,
2. every batch file is in the local index with the size on disk, not deleted,
   invalid or ignored, and the local version equal to the global one,
3. that same answer's ``availability`` (the connected devices holding the global
   version) lists every required device, not ``fromTemporary``.

Each file's verdict comes from one answer, so nothing read before a change is
trusted after it. A device that holds the batch but is disconnected is not in
``availability``: it is confirmed once it reconnects, never assumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class BatchFile:
    """One file of a batch: posix path relative to the batch folder, size on disk."""

    path: str
    size: int


@dataclass(frozen=True)
class SyncVerdict:
    """Result of one check.

    ``progress`` (0-100) is the share of the batch's bytes held by the
    furthest-behind device; it is 100 exactly when ``synced``. ``bytes_needed`` is
    that device's outstanding bytes. ``missing_devices`` lists the required devices
    that do not hold the whole batch yet (not configured, or still needing some of
    it; all of them while the local index is incomplete). ``detail`` is a short
    human-readable reason, suitable for ``last_error``/status output.
    """

    synced: bool
    bytes_total: int
    bytes_needed: int
    progress: float
    missing_devices: tuple[str, ...]
    detail: str
    indexed: bool = True  # False while a batch file is missing from the local index


class SyncthingAPI(Protocol):
    """The part of ``pipeline.syncthing.SyncthingClient`` this module uses."""

    def my_id(self) -> str: ...

    def devices(self) -> list[dict[str, Any]]: ...

    def connections(self) -> dict[str, Any]: ...

    def folder(self, folder_id: str) -> dict[str, Any]: ...

    def db_file(self, folder_id: str, name: str) -> dict[str, Any] | None: ...


def normalize_device_id(device_id: str) -> str:
    """Device IDs compare case-insensitively; Syncthing prints them upper-case."""
    return device_id.strip().upper()


def required_devices(
    client: SyncthingAPI, folder_id: str, configured: list[str]
) -> list[str]:
    """The devices that must hold a batch.

    ``configured`` (``syncthing.device_ids``) when not empty, de-duplicated and
    upper-cased; otherwise every device the folder is shared with except this one.
    An empty answer means nobody to sync to; ``check_batch`` then says not synced.
    """
    if configured:
        return _unique(normalize_device_id(d) for d in configured if d.strip())
    me = normalize_device_id(client.my_id())
    shared = client.folder(folder_id).get("devices") or []
    ids = (normalize_device_id(str(d.get("deviceID", ""))) for d in shared)
    return _unique(d for d in ids if d and d != me)


def check_batch(
    client: SyncthingAPI,
    folder_id: str,
    batch_name: str,
    files: list[BatchFile],
    device_ids: list[str],
) -> SyncVerdict:
    """Check one batch (folder ``batch_name`` at the root of the Syncthing folder)."""
    bytes_total = sum(f.size for f in files)
    required = _unique(normalize_device_id(d) for d in device_ids)
    if not required:
        return _verdict(
            False,
            bytes_total,
            bytes_total,
            (),
            f"no required devices: folder {folder_id!r} is shared with no remote "
            "device and syncthing.device_ids is empty",
        )

    known = {normalize_device_id(str(d.get("deviceID", ""))) for d in client.devices()}
    unconfigured = [d for d in required if d not in known]
    watched = [d for d in required if d in known]
    # Files, not bytes, decide: a zero-byte file still needed keeps the batch back.
    lacking: dict[str, int] = {d: 0 for d in watched}
    needed_by: dict[str, int] = {d: bytes_total for d in unconfigured}
    needed_by.update({d: 0 for d in watched})
    local_problems: list[str] = []
    for batch_file in files:
        name = f"{batch_name}/{batch_file.path}"
        entry = client.db_file(folder_id, name)
        problem = _local_problem(entry, batch_file.size)
        if problem:
            local_problems.append(f"{name}: {problem}")
        holders = set() if problem or entry is None else _holders(entry)
        for device in watched:
            if device not in holders:
                lacking[device] += 1
                needed_by[device] += batch_file.size

    still_needing = [d for d in watched if lacking[d]]
    synced = not unconfigured and not local_problems and not still_needing
    if local_problems:
        missing = tuple(required)
    else:
        missing = tuple(d for d in required if d in unconfigured or d in still_needing)
    offline = _disconnected(client, still_needing) if still_needing else []
    detail = _detail(batch_name, unconfigured, local_problems, still_needing, offline)
    verdict = _verdict(synced, bytes_total, max(needed_by.values()), missing, detail)
    return replace(verdict, indexed=not local_problems)


def _local_problem(entry: dict[str, Any] | None, size: int) -> str | None:
    """Why the local index does not (yet) vouch for this file, or None."""
    if entry is None:
        return "not in the local Syncthing index (not scanned yet, or ignored)"
    global_ = entry.get("global") or {}
    local = entry.get("local") or {}
    if global_.get("deleted"):
        return "deleted in the global index"
    if local.get("deleted") or local.get("invalid") or local.get("ignored"):
        return "local index entry is deleted, invalid or ignored"
    if global_.get("size") != size:
        return f"indexed size {global_.get('size')} differs from {size} bytes on disk"
    if global_.get("version") != local.get("version"):
        return "local version differs from the global version"
    return None


def _holders(entry: dict[str, Any]) -> set[str]:
    """Devices holding the whole global version (a temporary copy is not held)."""
    held: set[str] = set()
    for item in entry.get("availability") or []:
        if isinstance(item, dict):
            if not item.get("fromTemporary"):
                held.add(normalize_device_id(str(item.get("id", ""))))
    return held


def _disconnected(client: SyncthingAPI, devices: list[str]) -> list[str]:
    """Which of ``devices`` Syncthing is not connected to (for the detail only)."""
    conns = client.connections().get("connections") or {}
    live = {
        normalize_device_id(str(dev))
        for dev, info in conns.items()
        if isinstance(info, dict) and info.get("connected")
    }
    return [d for d in devices if d not in live]


def _detail(
    batch_name: str,
    unconfigured: list[str],
    local_problems: list[str],
    still_needing: list[str],
    offline: list[str],
) -> str:
    parts: list[str] = []
    if unconfigured:
        parts.append("not configured in Syncthing: " + ", ".join(unconfigured))
    if local_problems:
        more = len(local_problems) - 1
        tail = f" (and {more} more)" if more else ""
        parts.append(f"local index incomplete: {local_problems[0]}{tail}")
    if still_needing:
        names = (f"{d} (not connected)" if d in offline else d for d in still_needing)
        parts.append("still needed by: " + ", ".join(names))
    if not parts:
        return f"{batch_name} is held by every required device"
    return f"{batch_name} not synced; " + "; ".join(parts)


def _verdict(
    synced: bool,
    bytes_total: int,
    bytes_needed: int,
    missing: tuple[str, ...],
    detail: str,
) -> SyncVerdict:
    if synced:
        progress, bytes_needed = 100.0, 0
    elif bytes_total <= 0:
        progress = 0.0
    else:
        done = max(0, bytes_total - bytes_needed)
        # 100 means synced and nothing else: cap while only empty files lag behind.
        progress = min(99.99, round(100.0 * done / bytes_total, 2))
    return SyncVerdict(synced, bytes_total, bytes_needed, progress, missing, detail)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
