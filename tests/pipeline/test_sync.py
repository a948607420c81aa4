"""The sync stage against a Syncthing that fails: 500, timeouts, 403, malformed JSON.

A real Syncthing cannot be made to answer like this, so these use httpx.MockTransport;
tests/integration/test_sync_daemon.py covers the real thing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline import batch as batches
from pipeline import sync
from pipeline.models import Batch, BatchStatus, File, FileStatus, Job, JobStatus
from pipeline.syncthing import SyncthingClient, SyncthingError
from tests.conftest import wait_until

ME, REMOTE = "AAAAAAA-ME", "BBBBBBB-REMOTE"


class FakeSyncthing:
    """Answers like Syncthing; `fault` makes every call fail in one way."""

    def __init__(self, sync_dir: Path):
        self.sync_dir = sync_dir
        self.fault: str | None = None
        self.lacking: set[str] = set()  # names the remote does not hold yet
        self.unindexed: set[str] = set()  # names not in the local index yet
        self.calls: list[str] = []
        self.folder_type = "sendonly"
        self.broken: set[str] = set()  # paths that answer 500

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.url.path)
        if self.fault == "500" or request.url.path in self.broken:
            return httpx.Response(500, text="internal")
        if self.fault == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if self.fault == "403":
            return httpx.Response(403, text="CSRF Error")
        if self.fault == "forbidden":  # Syncthing 2's answer to a wrong key
            return httpx.Response(403, text="Forbidden")
        if self.fault == "401":
            return httpx.Response(401, text="Not Authorized")
        if self.fault == "migrating":  # Syncthing 2 migrating its database
            return httpx.Response(
                200,
                text="Database migration in progress",
                headers={"Content-Type": "text/plain"},
            )
        if self.fault == "malformed":
            return httpx.Response(200, text="{not json")
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == "/rest/system/status":
            return httpx.Response(200, json={"myID": ME})
        if path == "/rest/system/ping":
            return httpx.Response(200, json={"ping": "pong"})
        if path == "/rest/config/devices":
            return httpx.Response(200, json=[{"deviceID": ME}, {"deviceID": REMOTE}])
        if path.startswith("/rest/config/folders/"):
            devices = [{"deviceID": ME}, {"deviceID": REMOTE}]
            body = {"id": "media", "type": self.folder_type, "devices": devices}
            return httpx.Response(200, json=body)
        if path == "/rest/db/scan":
            return httpx.Response(200, text="")
        if path == "/rest/db/file":
            return self.file_info(params["file"])
        if path == "/rest/system/connections":
            return httpx.Response(
                200, json={"connections": {REMOTE: {"connected": True}}}
            )
        return httpx.Response(404, text="no such endpoint")

    def file_info(self, name: str) -> httpx.Response:
        path = self.sync_dir / name
        if not path.exists() or name in self.unindexed:
            return httpx.Response(404, text="No such object in the index")
        info = {"size": path.stat().st_size, "deleted": False, "version": ["x:1"]}
        held = [] if name in self.lacking else [{"id": REMOTE, "fromTemporary": False}]
        body = {"global": info, "local": info, "availability": held}
        return httpx.Response(200, text=json.dumps(body))


@pytest.fixture
def stack(service: Any) -> tuple[Any, FakeSyncthing]:
    svc = service(
        syncthing={"enabled": True, "auto_start": False, "api_key": "sekrit-key-123"}
    )
    fake = FakeSyncthing(svc.ctx.roots.sync_dir)
    svc.ctx.syncthing.close()
    svc.ctx.syncthing = SyncthingClient(
        "http://127.0.0.1:8384",
        "sekrit-key-123",
        transport=httpx.MockTransport(fake),
        retries=2,
        sleep=lambda s: None,
    )
    return svc, fake


def make_batch(svc: Any, n: int = 2, tag: str = "") -> Batch:
    """A CREATED batch of `n` new files `dir/{tag}f{k}.bin` (`tag` keeps them unique)."""
    for k in range(n):
        path = svc.ctx.roots.inbox / f"dir/{tag}f{k}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{tag}content {k}".encode() * 100)
        svc.submit(path)
    wait_until(
        lambda: File.select().where(File.status == FileStatus.UNIQUE).count() == n
    )
    made = batches.create_batch(svc.ctx)
    assert made is not None
    return made


def test_start_moves_batch_into_sync_folder_and_poll_confirms(stack: Any) -> None:
    svc, fake = stack
    made = make_batch(svc)
    (moved,) = sync.start_sync(svc.ctx)
    folder = svc.ctx.roots.sync_dir / made.name
    assert moved.status == BatchStatus.SYNCING
    assert (folder / "manifest.json").exists() and (folder / "dir" / "f0.bin").exists()
    assert not (svc.ctx.roots.batch_dir / made.name).exists()
    assert "/rest/db/scan" in fake.calls
    fake.lacking = {f"{made.name}/dir/f1.bin"}
    assert sync.poll(svc.ctx) == "ok"
    row = Batch.get_by_id(made.id)
    assert row.status == BatchStatus.SYNCING and 0 < row.progress < 100
    assert row.bytes_needed == 900
    fake.lacking = set()
    sync.poll(svc.ctx)
    row = Batch.get_by_id(made.id)
    assert (row.status, row.progress, row.bytes_needed) == (
        BatchStatus.SYNCED,
        100.0,
        0,
    )
    assert {f.status for f in File.select()} == {FileStatus.SYNCED}
    assert sync.start_sync(svc.ctx) == []  # nothing CREATED any more


@pytest.mark.parametrize(
    ("fault", "state", "text"),
    [
        ("500", "unreachable", "Syncthing"),
        ("timeout", "unreachable", "Syncthing"),
        ("malformed", "unreachable", "Syncthing"),
        ("403", "unauthorized", "API key (HTTP 403)"),
        ("forbidden", "unauthorized", "API key (HTTP 403)"),
        ("401", "unauthorized", "API key (HTTP 401)"),
        ("migrating", "starting", "Database migration in progress"),
    ],
)
def test_faults_keep_the_batch_syncing_with_an_error(
    stack: Any, fault: str, state: str, text: str
) -> None:
    svc, fake = stack
    made = make_batch(svc)
    sync.start_sync(svc.ctx)
    fake.fault = fault
    assert sync.poll(svc.ctx) == state
    row = Batch.get_by_id(made.id)
    assert row.status == BatchStatus.SYNCING
    assert text in (row.last_error or "")
    assert "sekrit-key-123" not in (row.last_error or "")
    fake.fault = None
    sync.poll(svc.ctx)
    assert Batch.get_by_id(made.id).status == BatchStatus.SYNCED


def test_rescan_failure_is_recorded_and_the_batch_still_handed_over(stack: Any) -> None:
    svc, fake = stack
    make_batch(svc)
    fake.broken = {"/rest/db/scan"}
    (moved,) = sync.start_sync(svc.ctx)
    assert moved.status == BatchStatus.SYNCING
    assert "rescan failed" in (moved.last_error or "")


def test_no_hand_over_while_the_folder_type_cannot_be_read(stack: Any) -> None:
    svc, fake = stack
    made = make_batch(svc)
    fake.fault = "500"
    with pytest.raises(SyncthingError):
        sync.start_sync(svc.ctx)
    assert Batch.get_by_id(made.id).status == BatchStatus.CREATED
    assert (svc.ctx.roots.batch_dir / made.name / "manifest.json").exists()
    fake.fault = None
    (moved,) = sync.start_sync(svc.ctx)
    assert moved.status == BatchStatus.SYNCING


def test_disabled_and_wrong_state(service: Any) -> None:
    svc = service()
    with pytest.raises(sync.SyncDisabled):
        sync.start_sync(svc.ctx)
    assert sync.poll(svc.ctx) == "disabled"


def test_unknown_and_not_ready_batch(stack: Any) -> None:
    svc, _ = stack
    with pytest.raises(LookupError):
        sync.start_sync(svc.ctx, 99)
    made = make_batch(svc)
    sync.start_sync(svc.ctx, made.id)
    with pytest.raises(sync.NotReady):
        sync.start_sync(svc.ctx, made.id)
    statuses = sync.sync_status()
    assert (
        statuses[0]["name"] == made.name
        and statuses[0]["bytes_total"] == made.size_bytes
    )


@pytest.mark.parametrize("kind", ["sendreceive", "receiveonly", None])
def test_a_folder_that_is_not_send_only_gets_no_batch(
    stack: Any, kind: str | None
) -> None:
    svc, fake = stack
    fake.folder_type = kind
    made = make_batch(svc)
    with pytest.raises(sync.UnsafeFolder, match="not Send Only"):
        sync.start_sync(svc.ctx)
    row = Batch.get_by_id(made.id)
    assert row.status == BatchStatus.CREATED and "Send Only" in row.last_error
    assert (svc.ctx.roots.batch_dir / made.name / "dir" / "f0.bin").exists()
    assert not (svc.ctx.roots.sync_dir / made.name).exists()
    assert "/rest/db/scan" not in fake.calls
    # The scheduled tick reports it and still follows the batches already handed over.
    svc.scheduler.sync_tick()
    assert svc.scheduler.syncthing_state == "ok"
    fake.folder_type = "sendonly"
    (moved,) = sync.start_sync(svc.ctx)
    assert moved.status == BatchStatus.SYNCING and moved.last_error is None


def test_poll_never_scans_and_the_sync_job_rescans_what_is_not_indexed(
    stack: Any,
) -> None:
    svc, fake = stack
    made = make_batch(svc)
    (moved,) = sync.hand_over(svc.ctx)  # moved, not scanned
    assert moved.status == BatchStatus.SYNCING and "/rest/db/scan" not in fake.calls
    fake.unindexed = {f"{made.name}/dir/f0.bin"}
    assert sync.poll(svc.ctx) == "ok"
    assert "/rest/db/scan" not in fake.calls  # the poll only notes it
    assert sync.rescans_due(svc.ctx)
    assert "not in the local Syncthing index" in Batch.get_by_id(made.id).last_error

    svc.scheduler.sync_tick()  # auto_start is off: a job that only rescans
    job = Job.select().where(Job.kind == "sync").get()
    svc.jobs.wait(job.id, 20)
    job = Job.get_by_id(job.id)
    assert job.status == JobStatus.DONE, job.message
    assert json.loads(job.result)["rescanned"] == [made.id]
    assert json.loads(job.result)["handed_over"] == []
    assert fake.calls.count("/rest/db/scan") == 1 and not sync.rescans_due(svc.ctx)

    sync.poll(svc.ctx)  # still not indexed, but just rescanned: not again yet
    assert not sync.rescans_due(svc.ctx)
    fake.unindexed = set()
    sync.poll(svc.ctx)
    assert Batch.get_by_id(made.id).status == BatchStatus.SYNCED


def test_a_remote_that_lacks_files_is_not_a_reason_to_rescan(stack: Any) -> None:
    svc, fake = stack
    made = make_batch(svc)
    sync.hand_over(svc.ctx)
    fake.lacking = {f"{made.name}/dir/f1.bin"}
    sync.poll(svc.ctx)
    assert not sync.rescans_due(svc.ctx)
    svc.scheduler.sync_tick()
    assert Job.select().where(Job.kind == "sync").count() == 0


def test_a_folder_made_unsafe_after_the_answer_fails_the_job_and_moves_nothing(
    stack: Any,
) -> None:
    svc, fake = stack
    made = make_batch(svc)
    assert [b.id for b in sync.prepare_start(svc.ctx)] == [made.id]
    fake.folder_type = "sendreceive"  # changed between the 202 and the job
    job, _ = svc.jobs.start("sync", lambda h: sync.sync_job(svc.ctx, h))
    svc.jobs.wait(job.id, 20)
    job = Job.get_by_id(job.id)
    assert job.status == JobStatus.FAILED and "not Send Only" in job.message
    row = Batch.get_by_id(made.id)
    assert row.status == BatchStatus.CREATED and "Send Only" in row.last_error
    assert (svc.ctx.roots.batch_dir / made.name / "dir" / "f0.bin").exists()
    assert "/rest/db/scan" not in fake.calls
