"""verify with two real Syncthing instances: does a remote still hold a corrupt file?"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from syncthing_env import SyncthingPair

from pipeline import batch as batches
from pipeline import verify
from pipeline.models import Batch, BatchStatus, File, JobStatus
from tests.conftest import wait_until
from tests.integration.test_sync_daemon import daemon, ingest
from tests.pipeline.test_verify import flip_a_bit


def run_verify(svc: Any) -> dict[str, Any]:
    job = svc.jobs.run_inline(
        "verify", lambda h: verify.verify_job(svc.ctx, h, hash_all=True)
    )
    assert job.status == JobStatus.DONE, job.message
    return json.loads(job.result)


def test_corrupt_sorted_file_names_the_remote_that_keeps_it(
    service: Any, syncthing_pair: SyncthingPair
) -> None:
    svc = daemon(service, syncthing_pair, sort={"auto": True})
    ingest(svc, ["a.jpg", "b.jpg"], 14)
    made = batches.create_batch(svc.ctx)
    assert made is not None
    wait_until(
        lambda: Batch.get_by_id(made.id).status == BatchStatus.SORTED, timeout=60
    )
    row = File.get(File.rel_path == "a.jpg")
    original = Path(row.current_path).read_bytes()
    flip_a_bit(Path(row.current_path))
    # Syncthing sees the sort as a deletion in the Send Only folder at its next scan.
    client = syncthing_pair.client()
    client.scan(syncthing_pair.folder_id)
    name = f"{made.name}/a.jpg"
    wait_until(
        lambda: (client.db_file(syncthing_pair.folder_id, name) or {})
        .get("global", {})
        .get("deleted"),
        timeout=30,
    )

    (finding,) = run_verify(svc)["findings"]

    assert finding["file_id"] == row.id and finding["status"] == "CORRUPT"
    remote = finding["syncthing"]
    assert remote["name"] == name
    assert remote["held"] is True, remote
    assert remote["devices"] == [syncthing_pair.remote.device_id]
    kept = syncthing_pair.remote_dir / made.name / "a.jpg"
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == row.sha256
    assert kept.read_bytes() == original
