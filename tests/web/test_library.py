"""The library routes through a real uvicorn server: adopt, verify, status, findings."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.models import File, FileSource, FileStatus
from tests.conftest import wait_until
from tests.pipeline.test_adopt import photo, snapshot
from tests.web.test_api import api, is_error  # noqa: F401 - the fixture

__all__ = ["api"]


def finished(client: Any, kind: str, job_id: int) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        data = client.get("/api/library/status").json()["data"]
        job = data[kind]
        return data if job["id"] == job_id and job["status"] == "DONE" else None

    return wait_until(done, timeout=30)


def test_adopt_verify_and_their_status(api: Any, tmp_path: Path) -> None:
    svc, client = api
    library = svc.ctx.roots.sorted_dir
    paths = [photo(library / "2019" / f"p{n}.jpg", n) for n in range(5)]
    before = snapshot(library)

    started = client.post("/api/library/adopt", json={})
    assert started.status_code == 202, started.text
    job = started.json()["data"]["job"]
    assert job["kind"] == "adopt"
    data = finished(client, "adopt", job["id"])
    assert data["adopt"]["progress"] == 100.0
    assert data["roots"] == [
        {
            "path": str(library),
            "kind": "library",
            "state": "ADOPTED",
            "files": 5,
            "duplicates": 0,
            "adopted_at": data["roots"][0]["adopted_at"],
        }
    ]
    assert File.select().where(File.source == FileSource.ADOPTED).count() == 5
    assert snapshot(library) == before

    other = tmp_path / "old"
    photo(other / "x.jpg", 50)
    started = client.post("/api/library/adopt", json={"path": str(other)})
    finished(client, "adopt", started.json()["data"]["job"]["id"])
    kinds = {
        r["path"]: r["kind"]
        for r in client.get("/api/library/status").json()["data"]["roots"]
    }
    assert kinds[str(other)] == "reference"

    paths[0].unlink()
    started = client.post("/api/library/verify", json={"hash": True})
    assert started.status_code == 202
    job_id = started.json()["data"]["job"]["id"]
    data = finished(client, "verify", job_id)
    result = data["verify"]["result"]
    assert result["hashed"] is True and result["checked"] == 6
    assert [f["path"] for f in result["findings"]] == [str(paths[0])]
    assert data["last_verify"]["missing_now"] == 1
    assert data["last_verify"]["ok"] is False
    assert File.get(File.current_path == str(paths[0])).status == FileStatus.MISSING

    health = client.get("/health").json()["data"]
    assert health["last_verify"]["found_missing"] == 1
    dashboard = client.get("/api/dashboard").json()["data"]
    assert dashboard["last_verify"]["missing_now"] == 1
    assert dashboard["files"]["by_status"]["MISSING"] == 1
    metrics = client.get("/metrics").text
    assert 'media_pipeline_verify_last_found{kind="missing"} 1.0' in metrics
    assert "media_pipeline_verify_last_checked_files 6.0" in metrics
    assert "media_pipeline_library_problem_files 1.0" in metrics
    assert "media_pipeline_verify_last_finished_timestamp_seconds" in metrics


def test_refused_paths_and_bad_bodies(api: Any, tmp_path: Path) -> None:
    svc, client = api
    inbox_sub = svc.ctx.roots.inbox / "sub"
    inbox_sub.mkdir()
    for body, words in (
        ({"path": str(inbox_sub)}, "inside paths.inbox"),
        ({"path": "relative"}, "absolute"),
        ({"path": "/etc"}, "system folder"),
        ({"path": str(tmp_path / "missing")}, "not an existing folder"),
        ({"path": ""}, "path"),
        ({"path": 5}, "path"),
        ({"nope": 1}, "nope"),
    ):
        error = is_error(
            client.post("/api/library/adopt", json=body), 400, "VALIDATION_ERROR"
        )
        assert words in error["message"], (body, error)
    is_error(
        client.post("/api/library/verify", json={"hash": "yes"}),
        400,
        "VALIDATION_ERROR",
    )
    assert client.get("/api/library/status").json()["data"]["adopt"] is None
    assert File.select().count() == 0
    assert not os.listdir(inbox_sub)
