"""Decide, through Syncthing's REST API, whether a batch is held by every device.

Pure apart from the client calls: no database, no file-system access. The caller
passes the batch's files with their sizes on disk and records the verdict; client
exceptions (``SyncthingError`` and subclasses) propagate so the caller can store
``last_error`` and retry later.

``/rest/db/completion`` is deliberately not used: Syncthing 1.19 answers 100 % for
a device whose index is still empty. Instead a batch is synced only when

1. every required device is configured in Syncthing,
2. every batch file is in the local index with the size on disk, not deleted, and
   the local version equal to the global one,
3. no required device's ``remoteneed`` lists a non-deleted entry of the batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

REMOTE_NEED_PAGE = 500


@dataclass(frozen=True)
class BatchFile:
    """One file of a batch: posix path relative to the batch folder, size on disk."""

    path: str
    size: int


@dataclass(frozen=True)
class SyncVerdict:
    """Result of one check.

    ``progress`` (0-100) is the share of the batch's bytes no longer needed by the
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


class SyncthingAPI(Protocol):
    """The part of ``pipeline.syncthing.SyncthingClient`` this module uses."""

    def my_id(self) -> str: ...

    def devices(self) -> list[dict[str, Any]]: ...

    def folder(self, folder_id: str) -> dict[str, Any]: ...

    def db_file(self, folder_id: str, name: str) -> dict[str, Any] | None: ...

    def remote_need_all(
        self, folder_id: str, device_id: str, perpage: int = ...
    ) -> Iterable[dict[str, Any]]: ...


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
    local_problems, local_missing = _check_local(client, folder_id, batch_name, files)
    local_missing_bytes = sum(f.size for f in local_missing)

    needed_by: dict[str, int] = {d: bytes_total for d in unconfigured}
    still_needing: list[str] = []
    missing_paths = {f.path for f in local_missing}
    indexed = {f.path: f.size for f in files if f.path not in missing_paths}
    for device in required:
        if device in unconfigured:
            continue
        entries, remote_bytes = _remote_need(
            client, folder_id, batch_name, device, indexed
        )
        needed_by[device] = local_missing_bytes + remote_bytes
        if entries:
            still_needing.append(device)

    bytes_needed = max(needed_by.values())
    synced = not unconfigured and not local_problems and not still_needing
    if local_problems:
        missing = tuple(required)
    else:
        missing = tuple(d for d in required if d in unconfigured or d in still_needing)
    detail = _detail(batch_name, unconfigured, local_problems, still_needing)
    return _verdict(synced, bytes_total, bytes_needed, missing, detail)


def _check_local(
    client: SyncthingAPI, folder_id: str, batch_name: str, files: list[BatchFile]
) -> tuple[list[str], list[BatchFile]]:
    """Problems with the local index, and the files that count as fully needed."""
    problems: list[str] = []
    missing: list[BatchFile] = []
    for batch_file in files:
        name = f"{batch_name}/{batch_file.path}"
        problem = _local_problem(client.db_file(folder_id, name), batch_file.size)
        if problem:
            problems.append(f"{name}: {problem}")
            missing.append(batch_file)
    return problems, missing


def _local_problem(entry: dict[str, Any] | None, size: int) -> str | None:
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


def _remote_need(
    client: SyncthingAPI,
    folder_id: str,
    batch_name: str,
    device: str,
    indexed: dict[str, int],
) -> tuple[list[str], int]:
    """Non-deleted batch entries ``device`` still needs, and their bytes.

    Only files the local index holds count as bytes here; the others are already
    counted as fully needed, and directories carry no batch bytes.
    """
    prefix = f"{batch_name}/"
    entries: list[str] = []
    needed = 0
    for entry in client.remote_need_all(folder_id, device, REMOTE_NEED_PAGE):
        name = str(entry.get("name", ""))
        if entry.get("deleted") or not (name == batch_name or name.startswith(prefix)):
            continue
        entries.append(name)
        rel = name[len(prefix) :]
        if rel in indexed:
            needed += indexed[rel]
    return entries, needed


def _detail(
    batch_name: str,
    unconfigured: list[str],
    local_problems: list[str],
    still_needing: list[str],
) -> str:
    parts: list[str] = []
    if unconfigured:
        parts.append("not configured in Syncthing: " + ", ".join(unconfigured))
    if local_problems:
        more = len(local_problems) - 1
        tail = f" (and {more} more)" if more else ""
        parts.append(f"local index incomplete: {local_problems[0]}{tail}")
    if still_needing:
        parts.append("still needed by: " + ", ".join(still_needing))
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
        # 100 means synced and nothing else: cap while only directories lag behind.
        progress = min(99.99, round(100.0 * done / bytes_total, 2))
    return SyncVerdict(synced, bytes_total, bytes_needed, progress, missing, detail)


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
