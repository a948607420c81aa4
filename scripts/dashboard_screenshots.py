"""Screenshots of the dashboard for the README: docs/dashboard-overview.png and
docs/dashboard-review.png.

Runs a real daemon (no watcher, Syncthing off) in a temporary folder, fills it with
generated pictures through the real intake stages, adds history rows (sorted batches
over the last weeks, files taken in over the last day) and photographs the pages in
headless Chromium (the browser driver of tests/integration/test_dashboard_browser.py).

    .venv/bin/python scripts/dashboard_screenshots.py [OUT_DIR]    # default: docs/
"""

from __future__ import annotations

import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "web")]

from live import serve_app  # noqa: E402

from daemon.config import load  # noqa: E402
from daemon.service import Service  # noqa: E402
from pipeline.models import (  # noqa: E402
    Batch,
    BatchStatus,
    File,
    FileStatus,
    Job,
    JobStatus,
    utcnow,
)
from tests.conftest import add_file, wait_until, write_config  # noqa: E402
from tests.integration.test_dashboard_browser import Chromium  # noqa: E402
from web.app import create_app  # noqa: E402

CAMERAS = (("Apple", "iPhone 13"), ("FUJIFILM", "X-T30"), ("Google", "Pixel 7"))


def landscape(path: Path, seed: int, size: tuple[int, int], quality: int = 90) -> Path:
    """A smooth made-up landscape (sky, sun, hills): a distinct picture per seed."""
    rng = np.random.default_rng(seed)
    w, h = 480, 360
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    sky_top, sky_low = rng.uniform(60, 200, 3), rng.uniform(150, 255, 3)
    img = sky_top + (sky_low - sky_top) * (y / h)[..., None]
    cx, cy, r = rng.uniform(60, w - 60), rng.uniform(40, h / 2), rng.uniform(20, 50)
    sun = ((x - cx) ** 2 + (y - cy) ** 2) < r**2
    img[sun] = rng.uniform(200, 255, 3)
    for layer in range(3):
        ridge = h * rng.uniform(0.45, 0.8) + 25 * np.sin(
            x / rng.uniform(30, 90) + rng.uniform(0, 6)
        )
        colour = rng.uniform(20, 140, 3) * (1 - 0.2 * layer)
        img[y > ridge] = colour
    picture = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = CAMERAS[seed % len(CAMERAS)]
    exif.get_ifd(0x8769)[
        0x9003
    ] = f"2024:0{seed % 9 + 1}:1{seed % 10} 1{seed % 10}:24:05"
    picture.resize(size, Image.Resampling.BICUBIC).save(
        path, "JPEG", quality=quality, exif=exif.tobytes()
    )
    return path


def take(svc: Service, path: Path) -> File:
    svc.submit(path)
    return wait_until(
        lambda: File.get_or_none(
            File.original_path == str(path),
            File.status.not_in((FileStatus.NEW, FileStatus.HASHED)),
        ),
        timeout=30,
    )


def populate(svc: Service) -> None:
    inbox = svc.ctx.roots.inbox
    for seed in (3, 7, 12):
        take(svc, landscape(inbox / f"IMG_{1000 + seed}.jpg", seed, (2048, 1536), 92))
        take(
            svc, landscape(inbox / f"IMG_{1000 + seed}_small.jpg", seed, (800, 600), 70)
        )
    take(svc, landscape(inbox / "IMG_1003_edit.jpg", 3, (1200, 900), 60))
    for seed in range(20, 26):
        take(svc, landscape(inbox / f"DSC_{seed:04}.jpg", seed, (640, 480)))
    now = utcnow()
    write = svc.ctx.writer.call
    for n in range(30):
        sorted_at = now - timedelta(days=29 - n, hours=2)
        write(
            lambda n=n, at=sorted_at: Batch.create(
                name=f"batch_{n + 1:06}",
                status=BatchStatus.SORTED,
                file_count=40 + (n * 37) % 90,
                size_bytes=(40 + (n * 37) % 90) * 4_000_000,
                created_at=at - timedelta(hours=1),
                synced_at=at - timedelta(minutes=20),
                sorted_at=at,
            )
        )
    for hour in range(24):
        for k in range((hour * 7) % 13 + 2):
            status = FileStatus.SORTED if hour < 20 else FileStatus.UNIQUE
            if k == 5:
                status = FileStatus.DUPLICATE
            add_file(
                svc,
                f"old/{hour:02}_{k}.jpg",
                status,
                size=3_500_000,
                created_at=now - timedelta(hours=23 - hour, minutes=k),
            )
    add_file(
        svc,
        "broken/IMG_0042.HEIC",
        FileStatus.ERROR,
        error="hash: [Errno 5] Input/output error",
    )
    write(
        lambda: Batch.create(
            name="batch_000031",
            status=BatchStatus.SYNCING,
            file_count=64,
            size_bytes=256_000_000,
            bytes_needed=70_000_000,
            progress=72.7,
        )
    )
    write(
        lambda: Job.create(
            kind="sort",
            status=JobStatus.RUNNING,
            started_at=now,
            total=120,
            done=75,
            message="batch_000030",
        )
    )


def shoot(browser: Chromium, url: str, ready: str, out: Path) -> None:
    page = browser.new_page()
    page.goto(url)
    page.wait_for(ready, timeout=30)
    page.wait_for(
        "[...document.querySelectorAll('img[data-thumb]')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30,
    )
    height = page.eval("document.documentElement.scrollHeight")
    page.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    page.eval("new Promise(r => setTimeout(r, 300))")
    out.write_bytes(page.screenshot())
    assert page.js_errors() == [], page.js_errors()
    page.close()
    print(f"wrote {out}")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = write_config(root, watcher={"enabled": False})
        svc = Service(load(config, environ={}))
        svc.start()
        browser: Any = None
        try:
            populate(svc)
            browser = Chromium.launch(root / "profile")
            with serve_app(create_app(svc.app_state())) as url:
                shoot(
                    browser,
                    url + "/dashboard",
                    "!!window.Chart && !!Chart.getChart('chart-storage')",
                    out / "dashboard-overview.png",
                )
                shoot(
                    browser,
                    url + "/dashboard/review",
                    "document.querySelectorAll('[data-group]').length === 3",
                    out / "dashboard-review.png",
                )
        finally:
            if browser is not None:
                browser.stop()
            svc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
