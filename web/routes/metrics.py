"""GET /metrics: Prometheus text format, from the database's counters at scrape time."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from peewee import fn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline import stats, status, verify
from pipeline.context import FOLDERS
from pipeline.models import Batch
from pipeline.states import BatchStatus
from web.routes.common import state, threaded
from web.state import AppState


class PipelineCollector(Collector):
    """Reads counts when scraped, so the numbers are never stale."""

    def __init__(self, app: AppState):
        self.app = app

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("media_pipeline", "Media Pipeline build information")
        info.add_metric([], {"version": self.app.version})
        yield info
        yield _gauge(
            "media_pipeline_uptime_seconds",
            "Seconds since start",
            time.monotonic() - self.app.started,
        )
        # One read of the trigger-kept counters: a scrape costs the same at any size.
        snap = status.counters()
        yield _labelled(
            "media_pipeline_files",
            "Files by status",
            "status",
            status.file_counts(snap),
        )
        yield _labelled(
            "media_pipeline_file_bytes",
            "Bytes of files by status",
            "status",
            {s: snap.bytes(stats.FILE_STATUS, s) for s in status.file_counts(snap)},
        )
        yield _labelled(
            "media_pipeline_batches",
            "Batches by status",
            "status",
            status.batch_counts(snap),
        )
        yield _gauge(
            "media_pipeline_near_duplicates",
            "Images flagged as near-duplicates",
            status.near_duplicate_count(snap),
        )
        yield _labelled(
            "media_pipeline_capture_source_files",
            "Files by where their capture date came from",
            "source",
            status.capture_sources(snap),
        )
        yield _gauge(
            "media_pipeline_mtime_dated_files",
            "Files dated only by their modification time (worth checking)",
            status.mtime_dated(snap),
        )
        yield _labelled(
            "media_pipeline_storage_bytes",
            "Bytes of tracked files by folder",
            "folder",
            status.storage_bytes(snap),
        )
        wait = status.waiting(self.app.ctx.clock(), self.app.ctx.settings.batch)
        yield _gauge(
            "media_pipeline_waiting_files", "Files waiting for a batch", wait["files"]
        )
        yield _gauge(
            "media_pipeline_waiting_bytes", "Bytes waiting for a batch", wait["bytes"]
        )
        yield from _verify_metrics()
        yield from _disk_metrics(self.app)
        yield from _sync_age()
        up = GaugeMetricFamily(
            "media_pipeline_component_up",
            "1 when a component is healthy",
            labels=["component"],
        )
        for name, value in self.app.components().items():
            up.add_metric([name], 1.0 if value in ("ok", "inotify", "polling") else 0.0)
        yield up


def _labelled(
    name: str, text: str, label: str, values: dict[str, int]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, text, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def _verify_metrics() -> Iterator[Any]:
    """The last library verify: when, how many files, what it found."""
    last = verify.last_run()
    if last is None:
        return
    finished = datetime.fromisoformat(last["finished_at"].replace("Z", "+00:00"))
    yield _gauge(
        "media_pipeline_verify_last_finished_timestamp_seconds",
        "When the last library verify finished (Unix time)",
        finished.timestamp(),
    )
    yield _gauge(
        "media_pipeline_verify_last_checked_files",
        "Files the last library verify checked",
        last["checked"],
    )
    yield _gauge(
        "media_pipeline_verify_last_hashed",
        "1 when the last library verify recomputed every SHA-256",
        1.0 if last["hashed"] else 0.0,
    )
    found = GaugeMetricFamily(
        "media_pipeline_verify_last_found",
        "What the last library verify found",
        labels=["kind"],
    )
    for kind in ("missing", "corrupt"):
        found.add_metric([kind], last[f"found_{kind}"])
    for kind in ("moved", "restored"):
        found.add_metric([kind], last[kind])
    yield found
    yield _gauge(
        "media_pipeline_library_problem_files",
        "Library files MISSING or CORRUPT now (listed by the last verify)",
        last["missing_now"] + last["corrupt_now"],
    )


def _disk_metrics(app: AppState) -> Iterator[Any]:
    """Free bytes on each configured folder's filesystem (for a disk-low alert)."""
    family = GaugeMetricFamily(
        "media_pipeline_filesystem_free_bytes",
        "Bytes free to this user on the filesystem of each configured folder",
        labels=["folder"],
    )
    roots = app.ctx.roots
    for name in FOLDERS:
        try:
            free = shutil.disk_usage(getattr(roots, name)).free
        except OSError:  # a folder gone (unmounted) has no figure, not a made-up one
            continue
        family.add_metric([name], float(free))
    yield family


def _sync_age() -> Iterator[Any]:
    """When the oldest batch still SYNCING was created (absent when none is)."""
    oldest = (
        Batch.select(fn.MIN(Batch.created_at))
        .where(Batch.status == BatchStatus.SYNCING)
        .scalar()
    )
    if oldest is None:
        return
    when = oldest if isinstance(oldest, datetime) else datetime.fromisoformat(oldest)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    yield _gauge(
        "media_pipeline_oldest_syncing_batch_created_timestamp_seconds",
        "When the oldest batch Syncthing has not delivered yet was created (Unix time)",
        when.timestamp(),
    )


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)


def render(app: AppState) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(app))
    return generate_latest(registry)


async def metrics(request: Request) -> Response:
    body = await threaded(render, state(request))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
