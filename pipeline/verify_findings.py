"""What verify lists about a MISSING or CORRUPT file, for its owner to act on.

The last-known hash, the batch and its manifest entry, identical copies still on
disk, and (Syncthing enabled) whether a remote device still holds the batch file.
Read-only: nothing here moves, deletes or writes a file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from pipeline.batch import read_manifest
from pipeline.context import Context
from pipeline.models import Batch, File, FileStatus
from pipeline.sync_check import required_devices
from pipeline.syncthing import SyncthingClient

MISSING = FileStatus.MISSING
CORRUPT = FileStatus.CORRUPT
LISTED = 1000  # findings listed in a job's result (all are in the database)
NEED_PAGE_SIZE = 1000
NEED_PAGES = 2000  # a remote's need list is read up to 2,000,000 entries


class RemoteCopies:
    """Whether Syncthing's remote devices still hold a sorted batch file (read-only).

    While a batch sits in sync_dir, Syncthing's global record of a file lists the
    devices holding it (`/rest/db/file` availability). Once the file is sorted out of
    sync_dir the global record is a deletion; a remote set up as documented (Receive
    Only, ignoreDelete) keeps its copy and so keeps that deletion in its need list.
    That list grows with the library, so it is read at most once per device per
    verify, and only when a finding needs it.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._kept: dict[str, set[str]] | None = None

    def _kept_by_device(self, client: SyncthingClient) -> dict[str, set[str]]:
        if self._kept is None:
            st = self.ctx.settings.syncthing
            devices = required_devices(client, st.folder_id, st.device_ids)
            self._kept = {device: self._ignored(client, device) for device in devices}
        return self._kept

    def _ignored(self, client: SyncthingClient, device: str) -> set[str]:
        """Names whose deletion `device` has not applied (it keeps the file)."""
        folder = self.ctx.settings.syncthing.folder_id
        names: set[str] = set()
        for page in range(1, NEED_PAGES + 1):
            entries = client.remote_need_page(folder, device, page, NEED_PAGE_SIZE)
            names.update(str(e.get("name")) for e in entries if e.get("deleted"))
            if len(entries) < NEED_PAGE_SIZE:
                break
        return names

    def ask(self, batch: Batch, entry: dict[str, Any]) -> dict[str, Any] | None:
        client = self.ctx.syncthing
        if client is None or not batch.location:
            return None
        sync_dir = self.ctx.roots.sync_dir
        location = Path(batch.location)
        if sync_dir not in location.parents or batch.synced_at is None:
            return {"held": False, "detail": "the batch never reached a remote device"}
        name = (location.relative_to(sync_dir) / entry["path"]).as_posix()
        try:
            return self._answer(client, name, entry)
        except Exception as exc:  # noqa: BLE001 - reported, never fatal
            return {"held": None, "name": name, "detail": f"Syncthing: {exc}"}

    def _answer(
        self, client: SyncthingClient, name: str, entry: dict[str, Any]
    ) -> dict[str, Any]:
        answer = client.db_file(self.ctx.settings.syncthing.folder_id, name)
        if answer is None:
            return {"held": False, "name": name, "detail": "unknown to Syncthing"}
        glob = answer.get("global") or {}
        if not glob.get("deleted", False):
            devices = [
                str(d.get("id"))
                for d in answer.get("availability") or []
                if isinstance(d, dict) and not d.get("fromTemporary")
            ]
            held = bool(devices) and glob.get("size") == entry.get("size")
            return {"held": held, "name": name, "devices": devices}
        keeping = [
            d for d, names in self._kept_by_device(client).items() if name in names
        ]
        return {
            "held": bool(keeping),
            "name": name,
            "devices": keeping,
            "detail": (
                "deleted here when sorted; these devices ignored the deletion and "
                "keep their copy"
                if keeping
                else "deleted here when sorted, and on every remote device too"
            ),
        }


def _copies(row: File) -> list[str]:
    """Other files with the last-known content that are still where recorded.

    An exact copy set aside in duplicates_dir, or an identical copy adopted in
    place, can restore the file. Each is checked on disk (size only: cheap).
    """
    if not row.sha256:
        return []
    query = (
        File.select(File.current_path, File.size)
        .where(
            File.sha256 == row.sha256,
            File.id != row.id,
            File.status.in_((FileStatus.SORTED, FileStatus.DUPLICATE)),
        )
        .limit(5)
    )
    out = []
    for other in query:
        try:
            st = os.lstat(other.current_path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_size == other.size:
            out.append(other.current_path)
    return out


def findings(ctx: Context, limit: int = LISTED) -> list[dict[str, Any]]:
    """Every MISSING and CORRUPT file (up to `limit`), with what can restore it."""
    rows = list(
        File.select()
        .where(File.status.in_((MISSING, CORRUPT)))
        .order_by(File.id)
        .limit(limit)
    )
    manifests: dict[int, Any] = {}
    remote = RemoteCopies(ctx)
    out = []
    for row in rows:
        item: dict[str, Any] = {
            "file_id": row.id,
            "status": row.status,
            "path": row.current_path,
            "sha256": row.sha256,
            "size": row.size,
            "source": row.source,
            "error": row.error,
            "batch": None,
            "syncthing": None,
            "copies": _copies(row),
        }
        batch = Batch.get_or_none(Batch.id == row.batch) if row.batch else None
        if batch is not None:
            if batch.id not in manifests:
                folder = Path(batch.location) if batch.location else None
                manifests[batch.id] = (
                    (folder / "manifest.json", read_manifest(folder))
                    if folder
                    else (None, None)
                )
            path, manifest = manifests[batch.id]
            entry = next(
                (
                    e
                    for e in (manifest or {}).get("files", [])
                    if e.get("sha256") == row.sha256
                ),
                None,
            )
            item["batch"] = {
                "id": batch.id,
                "name": batch.name,
                "manifest": str(path) if manifest is not None else None,
                "entry": entry,
            }
            if entry is not None:
                item["syncthing"] = remote.ask(batch, entry)
        out.append(item)
    return out
