"""The HTTP API through a real uvicorn server: envelope, errors, auth, routes, OpenAPI."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from pipeline.models import Batch, BatchStatus, ConfigChange, File, FileStatus
from tests.conftest import wait_until
from tests.pipeline.mediafixtures import make_jpeg
from web import schemas
from web.app import all_routes, create_app
from web.openapi import document

sys.path.insert(0, str(Path(__file__).parent))
from live import serve_app  # noqa: E402

KEY = "k" * 32


@contextmanager
def serve(svc: Any) -> Iterator[httpx.Client]:
    """The service's app on a real uvicorn server on 127.0.0.1; yields a client."""
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture
def api(service: Any) -> Iterator[tuple[Any, httpx.Client]]:
    svc = service()
    with serve(svc) as client:
        yield svc, client


def is_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["code"] == code and body["message"]
    assert "Traceback" not in response.text
    return body


def test_health(api: Any) -> None:
    _, client = api
    body = client.get("/health").json()
    assert body["status"] == "ok"
    data = body["data"]
    assert set(data) == {"version", "uptime_seconds", "components", "last_verify"}
    assert data["last_verify"] is None  # never verified
    assert set(data["components"]) == {"database", "watcher", "scheduler", "syncthing"}
    assert data["components"]["database"] == "ok"
    assert data["components"]["syncthing"] == "disabled"


def test_errors_use_the_envelope(api: Any) -> None:
    _, client = api
    is_error(client.get("/api/nope"), 404, "NOT_FOUND")
    is_error(client.get("/api/files/abc"), 404, "NOT_FOUND")
    is_error(client.get("/api/files/999"), 404, "NOT_FOUND")
    is_error(client.get("/api/batches/x1"), 404, "NOT_FOUND")
    is_error(client.get("/api/batches/5"), 404, "NOT_FOUND")
    is_error(client.delete("/api/files"), 405, "VALIDATION_ERROR")
    is_error(
        client.post(
            "/api/batch/create",
            content=b"{oops",
            headers={"Content-Type": "application/json"},
        ),
        400,
        "VALIDATION_ERROR",
    )
    is_error(
        client.post("/api/batch/create", json={"max_size_gb": -1}),
        400,
        "VALIDATION_ERROR",
    )
    is_error(
        client.post("/api/batch/create", json={"colour": 1}), 400, "VALIDATION_ERROR"
    )
    is_error(client.post("/api/batch/create", json=[1]), 400, "VALIDATION_ERROR")
    is_error(
        client.get("/api/files", params={"limit": "lots"}), 400, "VALIDATION_ERROR"
    )
    is_error(
        client.get("/api/files", params={"status": "WEIRD"}), 400, "VALIDATION_ERROR"
    )
    is_error(client.post("/api/sync/start", json={}), 409, "CONFLICT")


def test_dedup_files_and_duplicates(api: Any) -> None:
    svc, client = api
    inbox = svc.ctx.roots.inbox
    for n in range(3):
        make_jpeg(inbox / f"p{n}.jpg", seed=n, size=(256, 192))
    started = client.post("/api/dedup/start", json={})
    assert started.status_code == 202
    job = started.json()["data"]["job"]
    assert job["kind"] == "dedup" and job["status"] in ("RUNNING", "DONE")

    def done() -> bool:
        status = client.get("/api/dedup/status").json()["data"]
        return status["job"]["status"] == "DONE" and status["counts"]["unique"] == 3

    wait_until(done, timeout=20)
    page = client.get("/api/files", params={"limit": 2}).json()["data"]
    assert len(page["files"]) == 2 and page["next_after"] == page["files"][-1]["id"]
    rest = client.get("/api/files", params={"after": page["next_after"]}).json()["data"]
    assert len(rest["files"]) == 1 and rest["next_after"] is None
    one = client.get(f"/api/files/{rest['files'][0]['id']}").json()["data"]["file"]
    assert one["status"] == "UNIQUE" and len(one["sha256"]) == 64
    assert client.get("/api/files", params={"status": "unique"}).json()["data"]["files"]
    assert client.get("/api/duplicates").json()["data"] == {
        "groups": [],
        "next_after": None,
    }
    again = client.post("/api/dedup/start", json={}).json()["data"]["job"]
    wait_until(
        lambda: client.get("/api/dedup/status").json()["data"]["job"]["status"]
        == "DONE"
    )
    assert again["id"] != job["id"]
    assert File.select().count() == 3
    followed = client.get(f"/api/jobs/{job['id']}").json()["data"]["job"]
    assert followed["id"] == job["id"] and followed["status"] == "DONE"
    assert followed["result"]["unique"] == 3 and followed["result"]["arriving"] == 0
    is_error(client.get("/api/jobs/999999"), 404, "NOT_FOUND")
    is_error(client.get("/api/jobs/x"), 404, "NOT_FOUND")


def test_skipped_files_are_listed(service: Any) -> None:
    svc = service(intake={"media_only": True})
    inbox = svc.ctx.roots.inbox
    (inbox / "notes.txt").write_text("shopping list\n")
    make_jpeg(inbox / "p.jpg", seed=4)
    with serve(svc) as client:
        assert client.post("/api/dedup/start", json={}).status_code == 202
        wait_until(
            lambda: client.get("/api/dedup/status").json()["data"]["job"]["status"]
            == "DONE"
        )
        listed = client.get("/api/files", params={"status": "SKIPPED"}).json()["data"]
        (skipped,) = listed["files"]
        assert skipped["original_path"] == str(inbox / "notes.txt")
        assert skipped["current_path"] == skipped["original_path"]
        assert "media_only" in skipped["error"] and skipped["sha256"] is None
        by_status = client.get("/api/dashboard").json()["data"]["files"]["by_status"]
        assert by_status["SKIPPED"] == 1 and by_status["UNIQUE"] == 1
    assert (inbox / "notes.txt").exists()


def test_dedup_start_while_running_returns_the_same_job(api: Any) -> None:
    svc, client = api
    gate = threading.Event()
    job, created = svc.jobs.start("dedup", lambda h: gate.wait(10) and None)
    assert created
    try:
        answer = client.post("/api/dedup/start", json={}).json()["data"]["job"]
        assert answer["id"] == job.id and answer["status"] == "RUNNING"
    finally:
        gate.set()
        svc.jobs.wait(job.id, 10)


def test_batch_create_list_and_detail(api: Any) -> None:
    svc, client = api
    assert client.post("/api/batch/create", json={}).json() == {
        "status": "ok",
        "data": {"batch": None},
    }
    path = svc.ctx.roots.inbox / "one.bin"
    path.write_bytes(b"1" * 1000)
    svc.submit(path)
    wait_until(lambda: File.get_or_none(File.status == FileStatus.UNIQUE))
    created = client.post("/api/batch/create", json={"max_size_gb": 1})
    assert created.status_code == 201
    batch = created.json()["data"]["batch"]
    assert batch["name"] == "batch_000001" and batch["status"] == "CREATED"
    listed = client.get("/api/batches").json()["data"]["batches"]
    assert [b["id"] for b in listed] == [batch["id"]]
    detail = client.get(f"/api/batches/{batch['id']}").json()["data"]["batch"]
    assert detail["manifest"]["files"][0]["path"] == "one.bin"


def test_sort_start_and_status(api: Any) -> None:
    svc, client = api
    is_error(client.post("/api/sort/start", json={"batch_id": 7}), 404, "NOT_FOUND")
    inbox = svc.ctx.roots.inbox
    for n in range(3):
        make_jpeg(inbox / f"p{n}.jpg", f"2021:06:0{n + 1} 10:00:00", seed=n)
    client.post("/api/dedup/start", json={})
    wait_until(
        lambda: File.select().where(File.status == FileStatus.UNIQUE).count() == 3,
        timeout=20,
    )
    batch = client.post("/api/batch/create", json={}).json()["data"]["batch"]

    def sort(**body: Any) -> dict[str, Any]:
        started = client.post("/api/sort/start", json=body)
        assert started.status_code == 202
        job_id = started.json()["data"]["job"]["id"]

        def finished() -> dict[str, Any] | None:
            status = client.get("/api/sort/status").json()["data"]
            job = status["job"]
            return status if job["id"] == job_id and job["status"] == "DONE" else None

        return wait_until(finished, timeout=20)

    dry = sort(batch_id=batch["id"], dry_run=True)
    assert dry["counts"] == {"sorted": 0, "pending": 3, "errors": 0}
    assert not any(svc.ctx.roots.sorted_dir.rglob("*.jpg"))

    done = sort(batch_id=batch["id"])
    assert done["counts"] == {"sorted": 3, "pending": 0, "errors": 0}
    assert done["job"]["done"] == 3 and done["job"]["errors"] == 0
    for n in range(3):
        placed = svc.ctx.roots.sorted_dir / f"2021/06/0{n + 1}/p{n}.jpg"
        assert placed.is_file()
    assert client.get(f"/api/batches/{batch['id']}").json()["data"]["batch"][
        "status"
    ] == ("SORTED")


def test_cleanup_dry_run(api: Any) -> None:
    svc, client = api
    (svc.ctx.roots.inbox / "empty" / "nested").mkdir(parents=True)
    svc.ctx.settings.cleanup.min_folder_age_seconds = 0
    answer = client.post("/api/cleanup/run", json={"dry_run": True}).json()["data"]
    assert answer["dry_run"] is True
    assert any(a["path"].endswith("empty") for a in answer["actions"])
    assert (svc.ctx.roots.inbox / "empty" / "nested").is_dir()
    assert all(set(a) == {"action", "path", "reason"} for a in answer["actions"])


def test_config_get_put_masks_validates_and_audits(service: Any) -> None:
    svc = service(
        auth={"enabled": False, "api_key": KEY}, syncthing={"api_key": "st-secret-1234"}
    )
    config_path = svc.loaded.path
    with serve(svc) as client:
        shown = client.get("/api/config").json()["data"]["config"]
        assert (
            shown["auth"]["api_key"] == "********"
            and shown["syncthing"]["api_key"] == "********"
        )
        assert KEY not in json.dumps(shown)
        before = config_path.read_text()
        bad = client.put("/api/config", json={"dedup": {"near_duplicate_distance": 99}})
        body = is_error(bad, 400, "VALIDATION_ERROR")
        assert body["message"].startswith("dedup.near_duplicate_distance")
        is_error(client.put("/api/config", json={"nope": {}}), 400, "VALIDATION_ERROR")
        is_error(client.put("/api/config", json=[]), 400, "VALIDATION_ERROR")
        assert config_path.read_text() == before
        shown["dedup"]["near_duplicate_distance"] = 3
        shown["server"]["port"] = 9999
        answer = client.put("/api/config", json=shown).json()["data"]
        assert answer["restart_required"] == ["server.port"]
        assert answer["config"]["dedup"]["near_duplicate_distance"] == 3
        saved = yaml.safe_load(config_path.read_text())
        assert saved["auth"]["api_key"] == KEY  # masked value sent back kept the secret
        assert saved["syncthing"]["api_key"] == "st-secret-1234"
        assert svc.ctx.settings.dedup.near_duplicate_distance == 3  # applied live
        change = ConfigChange.select().order_by(ConfigChange.id.desc()).first()
        assert "dedup.near_duplicate_distance" in json.loads(change.keys)
        assert KEY not in change.old + change.new


def test_auth_required_when_enabled(service: Any) -> None:
    svc = service(auth={"enabled": True, "api_key": KEY})
    with serve(svc) as client:
        assert client.get("/health").status_code == 200
        is_error(client.get("/api/dashboard"), 401, "UNAUTHORIZED")
        is_error(
            client.get("/api/files", headers={"X-API-Key": "wrong"}),
            401,
            "UNAUTHORIZED",
        )
        is_error(client.get("/metrics"), 401, "UNAUTHORIZED")
        assert client.get("/api/files", headers={"X-API-Key": KEY}).status_code == 200
        bearer = {"Authorization": f"Bearer {KEY}"}
        assert client.get("/api/files", headers=bearer).status_code == 200
    log = (svc.ctx.roots.log_dir / "media-pipeline.log").read_text()
    assert KEY not in log


def test_metrics(api: Any) -> None:
    _, client = api
    text = client.get("/metrics").text
    assert 'media_pipeline_files{status="UNIQUE"} 0.0' in text
    assert "media_pipeline_storage_bytes" in text and "media_pipeline_info" in text
    assert "media_pipeline_mtime_dated_files 0.0" in text
    assert 'media_pipeline_file_bytes{status="SORTED"} 0.0' in text


def test_every_route_is_in_the_openapi_document(api: Any) -> None:
    _, client = api
    served = client.get("/openapi.json").json()
    assert served == json.loads(json.dumps(document()))
    documented = {
        (path, method) for path, ops in served["paths"].items() for method in ops
    }
    for route in all_routes():
        path = getattr(route, "path", "")
        if path == "/static":
            continue
        for method in sorted(getattr(route, "methods", None) or []):
            if method in ("HEAD", "OPTIONS"):
                continue
            assert (path, method.lower()) in documented, f"{method} {path} undocumented"
    on_disk = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert (
        json.loads(on_disk.read_text()) == served
    ), "run: python -m web.openapi > docs/openapi.json"


def shaped(model: type[schemas.Shape], answer: Any) -> None:
    """`answer` has exactly the documented shape (strict: no coercion, no extra key)."""
    model.model_validate_json(json.dumps(answer), strict=True)


def test_answers_have_the_documented_shapes(api: Any) -> None:
    svc, client = api
    served = client.get("/openapi.json").json()["components"]["schemas"]
    assert served == json.loads(json.dumps(schemas.component_schemas()))
    inbox = svc.ctx.roots.inbox
    for n in range(2):
        make_jpeg(inbox / f"s{n}.jpg", seed=10 + n)
    job = client.post("/api/dedup/start", json={}).json()["data"]["job"]
    shaped(schemas.Job, job)
    wait_until(
        lambda: client.get(f"/api/jobs/{job['id']}").json()["data"]["job"]["status"]
        == "DONE",
        timeout=20,
    )
    shaped(schemas.Job, client.get(f"/api/jobs/{job['id']}").json()["data"]["job"])
    files = client.get("/api/files").json()["data"]["files"]
    assert len(files) == 2
    for one in files:
        shaped(schemas.File, one)
    shaped(
        schemas.File,
        client.get(f"/api/files/{files[0]['id']}").json()["data"]["file"],
    )
    batch = client.post("/api/batch/create", json={}).json()["data"]["batch"]
    shaped(schemas.Batch, batch)
    for listed in client.get("/api/batches").json()["data"]["batches"]:
        shaped(schemas.Batch, listed)
    detail = client.get(f"/api/batches/{batch['id']}").json()["data"]["batch"]
    assert detail["manifest"] is not None
    shaped(schemas.Batch, detail)
    shaped(schemas.Dashboard, client.get("/api/dashboard").json()["data"])
    shaped(schemas.Error, client.get("/api/files/999999").json())
    with pytest.raises(ValueError):  # the check itself: an undeclared key fails
        shaped(schemas.File, {**files[0], "undeclared": 1})


def test_dbui_is_read_only_behind_its_password(service: Any) -> None:
    svc = service(dbui={"enabled": True, "password": "db-pass-123-long-enough"})
    with serve(svc) as client:
        first = client.get("/dbui/", follow_redirects=False)
        assert first.status_code in (302, 303)
        login = client.post(
            "/dbui/login/",
            data={"password": "db-pass-123-long-enough"},
            follow_redirects=True,
        )
        assert login.status_code == 200 and "files" in login.text


def test_repeated_wrong_keys_are_rate_limited(service: Any) -> None:
    svc = service(auth={"enabled": True, "api_key": KEY})
    with serve(svc) as client:
        for _ in range(3):
            is_error(
                client.get("/api/files"), 401, "UNAUTHORIZED"
            )  # no key: not a guess
        for _ in range(20):
            is_error(
                client.get("/api/files", headers={"X-API-Key": "guess"}),
                401,
                "UNAUTHORIZED",
            )
        is_error(
            client.get("/api/files", headers={"X-API-Key": "guess"}),
            429,
            "RATE_LIMITED",
        )
        # A blocked address presenting the right key is served (no lock-out).
        assert client.get("/api/files", headers={"X-API-Key": KEY}).status_code == 200
        assert client.get("/health").status_code == 200


def test_failure_limiter_forgets_after_the_window() -> None:
    from web.auth import FailureLimiter

    now = [0.0]
    limiter = FailureLimiter(limit=2, window=10, clock=lambda: now[0])
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.blocked("a") and not limiter.blocked("b")
    now[0] = 11
    assert not limiter.blocked("a")


def test_sync_routes_with_a_syncthing_that_answers(service: Any) -> None:
    from tests.pipeline.test_sync import FakeSyncthing, make_batch

    svc = service(syncthing={"enabled": True, "auto_start": False, "api_key": "x" * 12})
    fake = FakeSyncthing(svc.ctx.roots.sync_dir)
    svc.ctx.syncthing.close()
    from pipeline.syncthing import SyncthingClient

    svc.ctx.syncthing = SyncthingClient(
        "http://127.0.0.1:1", "x" * 12, transport=httpx.MockTransport(fake), retries=0
    )
    made = make_batch(svc)
    with serve(svc) as client:
        is_error(
            client.post("/api/sync/start", json={"batch_id": 99}), 404, "NOT_FOUND"
        )
        fake.folder_type = "sendreceive"
        unsafe = client.post("/api/sync/start", json={"batch_id": made.id})
        is_error(unsafe, 409, "CONFLICT")
        assert "not Send Only" in unsafe.json()["message"]
        fake.folder_type = "sendonly"
        started = client.post("/api/sync/start", json={"batch_id": made.id})
        assert started.status_code == 202
        assert started.json()["data"]["batches"][0]["id"] == made.id
        assert started.json()["data"]["job"]["kind"] == "sync"
        wait_until(lambda: Batch.get_by_id(made.id).status == BatchStatus.SYNCING)
        again = client.post("/api/sync/start", json={"batch_id": made.id})
        is_error(again, 409, "CONFLICT")
        rows = client.get("/api/sync/status").json()["data"]["batches"]
        assert (
            rows[0]["name"] == made.name and rows[0]["bytes_total"] == made.size_bytes
        )
        assert set(rows[0]) == {
            "id",
            "name",
            "status",
            "progress",
            "bytes_total",
            "bytes_needed",
            "last_error",
        }


def test_every_metric_of_the_alert_rules_is_served(api: Any) -> None:
    import re

    import yaml

    from pipeline.models import Batch
    from pipeline.states import BatchStatus

    svc, client = api
    svc.ctx.writer.call(lambda: Batch.create(name="b1", status=BatchStatus.SYNCING))
    text = client.get("/metrics").text
    assert 'media_pipeline_filesystem_free_bytes{folder="sorted_dir"}' in text
    rules = yaml.safe_load((Path(__file__).parents[2] / "docs/alerts.yml").read_text())
    exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = {n for e in exprs for n in re.findall(r"media_pipeline_\w+", e)}
    # The verify figures exist once a verify ran; the rest are served right away.
    later = {"media_pipeline_library_problem_files"}
    assert names > later
    missing = sorted(n for n in names - later if f"\n{n}" not in text)
    assert not missing, f"alerts.yml uses metrics /metrics lacks: {missing}"
    source = (Path(__file__).parents[2] / "web/routes/metrics.py").read_text()
    assert all(f'"{n}"' in source for n in later)
