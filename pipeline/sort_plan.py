"""Planning a sort: where each file of a batch goes, by capture date and template.

Companions stay together: a sidecar goes to its media file's folder, and a video with
the same stem as a photo in the batch (a Live Photo pair) follows the photo's folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.context import Context
from pipeline.dates import CaptureDate, capture_date, capture_info
from pipeline.dates.sidecars import takeout_names
from pipeline.fsops import split_suffix
from pipeline.media import is_sidecar, media_kind, sidecar_stem
from pipeline.models import FileStatus, database_proxy, utcnow

TO_SORT = (FileStatus.BATCHED, FileStatus.SYNCED)


_Reader = Callable[[str, tzinfo | None], tuple[CaptureDate, str | None]]


@dataclass(slots=True)
class Member:
    """A file of the batch as the sort reads it."""

    id: int
    path: str
    rel_path: str
    size: int | None
    sha256: str | None


@dataclass(slots=True)
class Plan:
    """Where one file goes and why."""

    row: Member
    when: datetime
    source: str
    camera: str | None
    kind: str
    target: str = ""
    duplicate_of: str | None = None

    @property
    def path(self) -> str:
        return self.row.path


def timezone(ctx: Context) -> tzinfo | None:
    name = ctx.settings.sort.timezone
    return ZoneInfo(name) if name else None


def members_to_sort(batch_id: int) -> list[Member]:
    """The batch's files still to sort, by id.

    Raw SQL into slotted objects: building peewee models cost a sizeable share of
    the whole sort.
    """
    cursor = database_proxy.connection().execute(
        "SELECT id, current_path, rel_path, size, sha256 FROM files"
        " WHERE batch = ? AND status IN (?, ?) ORDER BY id",
        (batch_id, *TO_SORT),
    )
    return [Member(*row) for row in cursor]


def render_folder(template: str, plan: Plan) -> Path:
    """The template filled in: {year}/{month}/{day} zero-padded, {kind}, {camera}."""
    return Path(
        template.format(
            year=f"{plan.when.year:04d}",
            month=f"{plan.when.month:02d}",
            day=f"{plan.when.day:02d}",
            kind=plan.kind,
            camera=plan.camera or "unknown",
        )
    )


def plan_batch(ctx: Context, rows: list[Member]) -> list[Plan]:
    """Capture dates for every file, companions aligned with their media file."""
    tz = timezone(ctx)
    template, root = ctx.settings.sort.template, ctx.roots.sorted_dir
    read = capture_info if "{camera}" in template else _date_only
    plans = [_plan_one(row, tz, read) for row in rows]
    _align_companions(plans)
    # Most of a batch shares a few folders: render each one once.
    folders: dict[tuple[int, int, int, str, str | None], str] = {}
    for plan in plans:
        when = plan.when
        key = (when.year, when.month, when.day, plan.kind, plan.camera)
        folder = folders.get(key)
        if folder is None:
            folder = folders[key] = os.path.join(root, render_folder(template, plan))
        plan.target = os.path.join(folder, os.path.basename(plan.path))
    return plans


def _date_only(path: str, tz: tzinfo | None) -> tuple[CaptureDate, None]:
    return capture_date(path, tz), None


def _plan_one(row: Member, tz: tzinfo | None, read: _Reader) -> Plan:
    kind = media_kind(row.path) or "other"
    try:
        date, camera = read(row.path, tz)
    except OSError as exc:
        # The move will fail too and mark the file ERROR; plan it anyway.
        return Plan(row, utcnow(), f"unreadable: {exc.strerror}", None, kind)
    return Plan(row, date.when, date.source, camera, kind)


def _stem(path: str) -> str:
    return os.path.basename(split_suffix(path)[0])


def _key(path: str, stem: str) -> tuple[str, str]:
    return (os.path.dirname(path), stem.lower())


def _align_companions(plans: list[Plan]) -> None:
    """Sidecars and Live Photo videos take the date (and kind/camera) of their photo."""
    keys = [_key(p.path, _stem(p.path)) for p in plans]
    photos = {k: p for k, p in zip(keys, plans, strict=True) if p.kind == "photos"}
    videos = {k: p for k, p in zip(keys, plans, strict=True) if p.kind == "videos"}
    orphans = []
    for key, plan in zip(keys, plans, strict=True):
        path = plan.path
        if plan.kind == "other" and is_sidecar(path):
            key = _key(path, sidecar_stem(path) or _stem(path))
            owner = photos.get(key, videos.get(key))
            if owner is not None:
                _follow(plan, owner)
            else:
                orphans.append(plan)
        elif plan.kind == "videos":
            photo = photos.get(key)
            if photo is not None:
                plan.when, plan.source = photo.when, f"{plan.source}+live-photo"
                plan.camera = plan.camera or photo.camera
    if orphans:
        _align_takeout(orphans, [*photos.values(), *videos.values()])


def _align_takeout(orphans: list[Plan], media: list[Plan]) -> None:
    """Takeout JSONs whose names were cut to 51 characters follow their file."""
    owners: dict[tuple[str, str], Plan] = {}
    for plan in media:
        folder, name = os.path.split(plan.path)
        for json_name in takeout_names(name):
            owners.setdefault((folder, json_name), plan)
    for plan in orphans:
        owner = owners.get(os.path.split(plan.path))
        if owner is not None:
            _follow(plan, owner)


def _follow(plan: Plan, owner: Plan) -> None:
    plan.when, plan.kind, plan.camera = owner.when, owner.kind, owner.camera
    plan.source = f"companion:{owner.source}"
