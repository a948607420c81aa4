"""config/local.yaml (what `make run` uses) keeps the README's promise.

"drop photos into var/inbox/ … watch them move … into var/sorted/YYYY/MM/DD/": with
these settings a photo gets there within a minute, by itself.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from daemon.config import deep_merge, load
from daemon.service import Service
from pipeline.models import File, FileStatus
from tests.conftest import FOLDERS, free_port, wait_until
from tests.pipeline.mediafixtures import make_jpeg

LOCAL = Path(__file__).resolve().parents[2] / "config" / "local.yaml"


def test_a_dropped_photo_reaches_sorted_within_a_minute(tmp_path: Path) -> None:
    raw: dict[str, Any] = yaml.safe_load(LOCAL.read_text())
    assert not raw.get("syncthing", {}).get("enabled")
    # Only where it lives changes: every timing is local.yaml's own.
    where = {
        "paths": {n: str(tmp_path / n.removesuffix("_dir")) for n in FOLDERS},
        "database": {"path": str(tmp_path / "db.sqlite")},
        "server": {"port": free_port()},
    }
    config = tmp_path / "local.yaml"
    config.write_text(yaml.safe_dump(deep_merge(raw, where)))
    svc = Service(load(config, environ={}))
    svc.start()
    try:
        photo = make_jpeg(
            tmp_path / "staging" / "IMG_0001.jpg", datetime(2024, 3, 7, 12), seed=1
        )
        dropped = time.monotonic()
        photo.rename(svc.ctx.roots.inbox / "IMG_0001.jpg")
        row = wait_until(
            lambda: File.get_or_none(File.status == FileStatus.SORTED),
            timeout=60,
            interval=0.5,
        )
        took = time.monotonic() - dropped
        target = svc.ctx.roots.sorted_dir / "2024" / "03" / "07" / "IMG_0001.jpg"
        assert row.current_path == str(target) and target.exists()
        print(f"inbox to sorted_dir in {took:.1f} s")
    finally:
        svc.stop()
