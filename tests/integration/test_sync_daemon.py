"""The whole daemon with two real Syncthing instances: hand-over, follow-up, sorting."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

from syncthing_env import SyncthingPair

from pipeline import batch as batches
from pipeline.models import Batch, BatchStatus, File, FileStatus
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import make_jpeg


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def daemon(service: Any, pair: SyncthingPair, **extra: Any) -> Any:
    syncthing = {
        "enabled": True,
        "url": pair.url,
        "api_key": pair.api_key,
        "folder_id": pair.folder_id,
        "poll_interval_seconds": 0.5,
        "auto_start": True,
    }
    syncthing.update(extra.pop("syncthing", {}))
    return service(
        paths={"sync_dir": str(pair.local_dir)},
        syncthing=syncthing,
        watcher={"enabled": True, "settle_seconds": 0.2},
        **extra,
    )


def ingest(svc: Any, names: list[str], day: int) -> list[Path]:
    paths = [
        make_jpeg(
            svc.ctx.roots.inbox / name, datetime(2023, 4, day, 10, n), size=(320, 240)
        )
        for n, name in enumerate(names)
    ]
    wait_until(
        lambda: File.select().where(File.status == FileStatus.UNIQUE).count()
        >= len(names),
        timeout=20,
    )
    return paths


def test_batch_reaches_remote_then_is_sorted_and_remote_keeps_it(
    service: Any, syncthing_pair: SyncthingPair
) -> None:
    svc = daemon(service, syncthing_pair, sort={"auto": True})
    originals = {
        p.name: sha(p) for p in ingest(svc, ["a.jpg", "b.jpg", "sub/c.jpg"], 12)
    }
    made = batches.create_batch(svc.ctx)
    assert made is not None
    wait_until(
        lambda: Batch.get_by_id(made.id).status == BatchStatus.SORTED, timeout=60
    )
    remote = syncthing_pair.remote_dir / made.name
    on_remote = {p.name: sha(p) for p in remote.rglob("*.jpg")}
    assert on_remote == originals  # same bytes on the remote's disk, after sorting too
    batch = Batch.get_by_id(made.id)
    assert batch.synced_at is not None and batch.synced_at <= batch.sorted_at
    sorted_files = {p.name: sha(p) for p in svc.ctx.roots.sorted_dir.rglob("*.jpg")}
    assert sorted_files == originals
    assert (svc.ctx.roots.sorted_dir / "2023" / "04" / "12" / "a.jpg").exists()
    assert not list((syncthing_pair.local_dir / made.name).rglob("*.jpg"))


def test_remote_down_keeps_batch_syncing_until_it_returns(
    service: Any, syncthing_pair: SyncthingPair
) -> None:
    svc = daemon(service, syncthing_pair)
    syncthing_pair.stop_remote()
    ingest(svc, ["x.jpg", "y.jpg"], 13)
    made = batches.create_batch(svc.ctx)
    wait_until(
        lambda: Batch.get_by_id(made.id).status == BatchStatus.SYNCING, timeout=20
    )
    wait_until(lambda: Batch.get_by_id(made.id).last_error, timeout=20)
    for _ in range(3):  # several polls while the remote is away
        svc.scheduler.sync_tick()
        row = Batch.get_by_id(made.id)
        assert row.status == BatchStatus.SYNCING and row.progress < 100
    syncthing_pair.start_remote()
    wait_until(
        lambda: Batch.get_by_id(made.id).status == BatchStatus.SYNCED, timeout=60
    )
    remote = syncthing_pair.remote_dir / made.name
    assert sorted(p.name for p in remote.rglob("*.jpg")) == ["x.jpg", "y.jpg"]


def test_wrong_key_is_reported_not_fatal(
    service: Any, syncthing_pair: SyncthingPair
) -> None:
    svc = daemon(service, syncthing_pair, syncthing={"api_key": "wrong-key-0123456789"})
    ingest(svc, ["k.jpg"], 14)
    made = batches.create_batch(svc.ctx)
    wait_until(lambda: svc.components()["syncthing"] == "unauthorized", timeout=20)
    row = Batch.get_by_id(made.id)
    assert row.status in (BatchStatus.SYNCING, BatchStatus.CREATED)
    assert "API key" in (row.last_error or "")
    assert "wrong-key" not in (row.last_error or "")
    assert svc.healthy()


def test_a_send_receive_folder_gets_no_batch_until_made_send_only(
    service: Any, syncthing_pair: SyncthingPair
) -> None:
    # Syncthing's default folder type: a deletion on the remote would come back here.
    client = syncthing_pair.client()
    try:
        folder = client.folder(syncthing_pair.folder_id)
        assert folder["type"] == "sendonly"  # what the real API calls the field
        client.put_folder({**folder, "type": "sendreceive"})
        svc = daemon(service, syncthing_pair)
        ingest(svc, ["r.jpg"], 15)
        made = batches.create_batch(svc.ctx)
        assert made is not None
        wait_until(
            lambda: "not Send Only" in (Batch.get_by_id(made.id).last_error or ""),
            timeout=20,
        )
        svc.scheduler.sync_tick()
        assert Batch.get_by_id(made.id).status == BatchStatus.CREATED
        assert (svc.ctx.roots.batch_dir / made.name / "r.jpg").exists()
        assert not (syncthing_pair.local_dir / made.name).exists()
        client.put_folder({**folder, "type": "sendonly"})
        wait_until(
            lambda: Batch.get_by_id(made.id).status == BatchStatus.SYNCED, timeout=60
        )
    finally:
        client.close()
