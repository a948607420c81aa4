"""The new capture sources through a real sort, and as /api/files/{id} shows them."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pipeline import sort
from pipeline.models import File
from tests.pipeline import mediafixtures as mf
from tests.pipeline.test_sort import NY, ingest, tree
from web.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "web"))
from datesfixtures import (  # noqa: E402
    app1_xmp,
    app12_picture_info,
    jpeg_with,
    takeout_json,
    xmp_packet,
)
from live import serve_app  # noqa: E402

TAKEN_UTC = datetime(2019, 7, 1, 2, 30, tzinfo=UTC)  # June 30 in New York
LONG = "Screenshot_20190512-134522_com.whatsapp.android"


def build(d: Path) -> None:
    mtime = datetime(2024, 1, 1, 12, tzinfo=UTC)
    mf.set_mtime(mf.make_plain(d / "IMG_20.jpg", mf.jpeg_bytes(seed=20)), mtime)
    takeout_json(d / "IMG_20.jpg.supplemental-metadata.json", TAKEN_UTC)
    mf.set_mtime(mf.make_plain(d / f"{LONG}.jpg", mf.jpeg_bytes(seed=21)), mtime)
    long_json = f"{LONG}.jpg.supplemental-metadata"[:46] + ".json"
    mf.set_mtime(takeout_json(d / long_json, TAKEN_UTC), mtime)
    packet = app1_xmp(xmp_packet(photoshop="2003-08-31"))
    mf.make_plain(d / "edit.jpg", jpeg_with(mf.jpeg_bytes(seed=22), packet))
    old = app12_picture_info(datetime(2000, 9, 1, 8, 0))
    mf.make_plain(d / "P0001.jpg", jpeg_with(mf.jpeg_bytes(seed=23), old))
    mf.set_mtime(mf.make_plain(d / "scan.jpg", mf.jpeg_bytes(seed=24)), mtime)
    mf.make_plain(d / "scan.xmp", xmp_packet(create="1998-12-24T18:00:00+01:00"))


def test_sort_uses_xmp_makernote_and_sidecars(service: Any) -> None:
    svc = service(**NY)
    made = ingest(svc, build)
    sort.sort_batch(svc.ctx, made)
    long_json = f"{LONG}.jpg.supplemental-metadata"[:46] + ".json"
    assert tree(svc.ctx.roots.sorted_dir) == sorted(
        [
            "1998/12/24/scan.jpg",
            "1998/12/24/scan.xmp",
            "2000/09/01/P0001.jpg",
            "2003/08/31/edit.jpg",
            "2019/06/30/IMG_20.jpg",
            "2019/06/30/IMG_20.jpg.supplemental-metadata.json",
            f"2019/06/30/{LONG}.jpg",
            f"2019/06/30/{long_json}",
        ]
    )
    sources = {Path(r.current_path).name: r.capture_source for r in File.select()}
    assert sources == {
        "scan.jpg": "sidecar",
        "scan.xmp": "companion:sidecar",
        "P0001.jpg": "makernote",
        "edit.jpg": "xmp",
        "IMG_20.jpg": "sidecar",
        "IMG_20.jpg.supplemental-metadata.json": "companion:sidecar",
        f"{LONG}.jpg": "sidecar",
        long_json: "companion:sidecar",
    }
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for row in File.select():
            shown = client.get(f"/api/files/{row.id}").json()["data"]["file"]
            assert shown["capture_source"] == row.capture_source
            assert shown["capture_time"].startswith(row.capture_time.date().isoformat())
