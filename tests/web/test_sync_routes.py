"""POST /api/sync/start on a real server: a job at once, even while Syncthing's scan hangs.

Syncthing is the scripted fake of tests/pipeline/test_sync.py on httpx.MockTransport:
a real Syncthing cannot be made to hang a scan on demand.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline import sync
from pipeline.models import Batch, BatchStatus, Job, JobStatus
from pipeline.syncthing import SyncthingClient
from tests.conftest import wait_until
from tests.pipeline.test_sync import FakeSyncthing, make_batch
from web.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
from live import serve_app  # noqa: E402

KEY = "sekrit-key-123"
HANG_LIMIT = 60.0  # a hung scan gives up by itself, so a failing test cannot hang


class HangingScan(FakeSyncthing):
    """A Syncthing whose scans block until `release` is set (while `hang` is on)."""

    def __init__(self, sync_dir: Path) -> None:
        super().__init__(sync_dir)
        self.hang = False
        self.scanning = threading.Event()
        self.release = threading.Event()

    def answer(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rest/db/scan" and self.hang:
            self.scanning.set()
            self.release.wait(HANG_LIMIT)
        return super().answer(request)


@pytest.fixture
def stack(service: Any) -> Iterator[tuple[Any, HangingScan]]:
    svc = service(syncthing={"enabled": True, "auto_start": False, "api_key": KEY})
    fake = HangingScan(svc.ctx.roots.sync_dir)
    svc.ctx.syncthing.close()
    svc.ctx.syncthing = SyncthingClient(
        "http://127.0.0.1:8384",
        KEY,
        transport=httpx.MockTransport(fake),
        retries=2,
        sleep=lambda s: None,
    )
    yield svc, fake
    fake.release.set()  # never leave a job thread blocked behind the test
    svc.jobs.wait_all()


@contextmanager
def serve(svc: Any) -> Iterator[httpx.Client]:
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    # 5 s: far above the 1 s the answer needs, far below a scan that hangs 60 s.
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=5) as client:
        yield client


def job_row(job_id: int) -> Job:
    return Job.get_by_id(job_id)


def test_start_answers_with_a_job_while_the_scan_hangs(stack: Any) -> None:
    svc, fake = stack
    first = make_batch(svc, 1)
    (handed,) = sync.start_sync(svc.ctx)  # already with Syncthing, being followed
    fake.lacking = {f"{first.name}/dir/f0.bin"}
    second = make_batch(svc, 2, tag="b")
    fake.hang = True
    with serve(svc) as client:
        answer = client.post("/api/sync/start", json={})
        # Answered (within the client's 5 s) while the scan it asked for is held.
        assert not fake.release.is_set()
        assert answer.status_code == 202, answer.text
        data = answer.json()["data"]
        assert data["job"]["kind"] == "sync"
        assert data["job"]["status"] == JobStatus.RUNNING
        assert [b["id"] for b in data["batches"]] == [second.id]
        job_id = data["job"]["id"]
        wait_until(fake.scanning.is_set, timeout=20)
        assert Batch.get_by_id(second.id).status == BatchStatus.SYNCING

        # The hung job holds nothing the poll needs: the other batch is followed.
        fake.lacking = set()
        tick = threading.Thread(target=svc.scheduler.sync_tick, name="tick")
        tick.start()
        tick.join(20)
        assert not tick.is_alive() and not fake.release.is_set()
        assert Batch.get_by_id(handed.id).status == BatchStatus.SYNCED
        assert svc.scheduler.syncthing_state == "ok"

        # Calling again answers the running job instead of starting a second.
        again = client.post("/api/sync/start", json={})
        assert again.status_code == 202 and not fake.release.is_set()
        assert again.json()["data"]["job"]["id"] == job_id
        assert again.json()["data"]["batches"] == []
        assert job_row(job_id).status == JobStatus.RUNNING

        fake.release.set()
        wait_until(lambda: job_row(job_id).status == JobStatus.DONE, timeout=20)
        done = client.get("/api/sort/status")  # any answer: the server is fine
        assert done.status_code == 200
    row = job_row(job_id)
    assert (row.total, row.done, row.errors) == (2, 2, 0)
    assert f"handed over to Syncthing: {second.name}" in row.message
    sync.poll(svc.ctx)
    assert Batch.get_by_id(second.id).status == BatchStatus.SYNCED


def test_preconditions_answer_at_once_without_a_job(stack: Any) -> None:
    svc, fake = stack
    made = make_batch(svc)
    with serve(svc) as client:
        unknown = client.post("/api/sync/start", json={"batch_id": 999})
        assert unknown.status_code == 404

        fake.folder_type = "sendreceive"
        unsafe = client.post("/api/sync/start", json={"batch_id": made.id})
        assert unsafe.status_code == 409 and "not Send Only" in unsafe.text
        assert "Send Only" in Batch.get_by_id(made.id).last_error

        # One quick call, no retries: a broken Syncthing is a 502 at once.
        fake.folder_type = "sendonly"
        fake.fault = "500"
        fake.calls.clear()
        broken = client.post("/api/sync/start", json={})
        assert broken.status_code == 502
        assert broken.json()["code"] == "DEPENDENCY_ERROR"
        assert "HTTP 500" in broken.json()["message"] and KEY not in broken.text
        assert fake.calls == ["/rest/config/folders/media"]

        fake.fault = "forbidden"
        refused = client.post("/api/sync/start", json={})
        assert refused.status_code == 502 and "HTTP 403" in refused.text

        assert Job.select().where(Job.kind == "sync").count() == 0
        assert Batch.get_by_id(made.id).status == BatchStatus.CREATED
        fake.fault = None
        started = client.post("/api/sync/start", json={"batch_id": made.id})
        assert started.status_code == 202
        job_id = started.json()["data"]["job"]["id"]
        wait_until(lambda: job_row(job_id).status == JobStatus.DONE, timeout=20)
        assert Batch.get_by_id(made.id).status == BatchStatus.SYNCING
        not_created = client.post("/api/sync/start", json={"batch_id": made.id})
        assert not_created.status_code == 409 and "SYNCING" in not_created.text


def test_disabled_is_409(service: Any) -> None:
    svc = service()
    with serve(svc) as client:
        answer = client.post("/api/sync/start", json={})
    assert answer.status_code == 409 and "disabled" in answer.json()["message"]
