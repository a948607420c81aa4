"""GET /metrics: Prometheus text format, computed from the database at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pipeline import status
from pipeline.dashboard import storage_bytes
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
        files = GaugeMetricFamily(
            "media_pipeline_files", "Files by status", labels=["status"]
        )
        for name, count in status.file_counts().items():
            files.add_metric([name], count)
        yield files
        batches = GaugeMetricFamily(
            "media_pipeline_batches", "Batches by status", labels=["status"]
        )
        for name, count in status.batch_counts().items():
            batches.add_metric([name], count)
        yield batches
        yield _gauge(
            "media_pipeline_near_duplicates",
            "Images flagged as near-duplicates",
            status.near_duplicate_count(),
        )
        storage = GaugeMetricFamily(
            "media_pipeline_storage_bytes",
            "Bytes of tracked files by folder",
            labels=["folder"],
        )
        for folder, size in storage_bytes().items():
            storage.add_metric([folder], size)
        yield storage
        up = GaugeMetricFamily(
            "media_pipeline_component_up",
            "1 when a component is healthy",
            labels=["component"],
        )
        for name, value in self.app.components().items():
            up.add_metric([name], 1.0 if value in ("ok", "inotify", "polling") else 0.0)
        yield up


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
