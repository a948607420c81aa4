"""POST /api/files/{id}/retry and POST /api/files/retry on a real server."""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import httpx

from daemon import cli, retry_cli
from pipeline import batch as batches
from pipeline import sort
from pipeline.models import Batch, BatchStatus, File, FileStatus
from tests.conftest import wait_until
from web.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
from live import serve_app  # noqa: E402


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["code"] == code
    return str(body["message"])


def test_a_full_library_then_a_retry_request_sorts_every_file(
    service: Any, small_disk: Any
) -> None:
    disk = small_disk("library")
    svc = service(
        paths={"sorted_dir": str(disk.path)},
        intake={"media_only": False},
        retry={"max_attempts": 0},  # nothing automatic: only the requests below
    )
    disk.wants_copy(svc.ctx)
    for i in range(6):
        path = svc.ctx.roots.inbox / f"f{i}.bin"
        path.write_bytes(random.Random(i).randbytes(300 * 1024))
        svc.submit(path)
    wait_until(lambda: File.select().where(File.status == "UNIQUE").count() == 6)
    made = batches.create_batch(svc.ctx)
    assert made is not None
    sort.sort_batch(svc.ctx, made)
    failed = [r.id for r in File.select().where(File.status == FileStatus.ERROR)]
    done = File.get(File.status == FileStatus.SORTED)
    assert failed and all(File.get_by_id(i).next_retry_at is None for i in failed)

    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        shown = client.get(f"/api/files/{failed[0]}").json()["data"]["file"]
        assert shown["error_stage"] == "sort" and shown["next_retry_at"] is None
        assert "No space left on device" in shown["error"]
        not_error = client.post(f"/api/files/{done.id}/retry", json={})
        assert "not ERROR" in error_of(not_error, 409, "CONFLICT")
        error_of(client.post("/api/files/999999/retry", json={}), 404, "NOT_FOUND")
        bad = client.post("/api/files/retry", json={"ids": "all"})
        assert error_of(bad, 400, "VALIDATION_ERROR").startswith("ids")

        disk.grow()
        one = client.post(f"/api/files/{failed[0]}/retry", json={})
        assert one.status_code == 202, one.text
        assert one.json()["data"]["job"]["kind"] == "retry"
        wait_until(lambda: File.get_by_id(failed[0]).status == FileStatus.SORTED)
        assert Batch.get_by_id(made.id).status != BatchStatus.SORTED or len(failed) == 1

        rest = client.post("/api/files/retry", json={})
        assert rest.status_code in (200, 202), rest.text
        assert rest.json()["data"]["retried"] == len(failed) - 1
        wait_until(
            lambda: File.select().where(File.status == FileStatus.SORTED).count() == 6
        )
        wait_until(lambda: Batch.get_by_id(made.id).status == BatchStatus.SORTED)

        again = client.post("/api/files/retry", json={"ids": failed})
        assert again.status_code == 200
        assert again.json()["data"] == {"retried": 0, "batches": [], "job": None}
    assert svc.ctx.roots.sorted_dir == disk.path
    assert sum(1 for p in disk.path.rglob("*") if p.is_file()) == 6


def test_cli_retry_follows_the_job_and_sums_it_up(
    service: Any, monkeypatch: Any, capsys: Any, tmp_path: Path
) -> None:
    svc = service(intake={"media_only": False})
    for name in ("a.bin", "b.bin"):
        path = svc.ctx.roots.inbox / name
        path.write_bytes(name.encode() * 100)
        svc.submit(path)
    wait_until(lambda: File.select().where(File.status == "UNIQUE").count() == 2)
    made = batches.create_batch(svc.ctx)
    assert made is not None
    row = File.get(File.rel_path == "b.bin")
    Path(row.current_path).rename(tmp_path / "b.bin")
    sort.sort_batch(svc.ctx, made)
    assert File.get_by_id(row.id).status == FileStatus.ERROR

    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url:
        monkeypatch.setattr(retry_cli, "daemon_address", lambda s: (url, {}))
        args = cli.parser().parse_args(["retry", str(row.id)])
        assert args.ids == [row.id]
        assert retry_cli.cmd_retry(args, svc.settings) == 1
        out = capsys.readouterr().out
        assert "1 files asked for, 0 retried, 0 failed again, 1 missing" in out

        (tmp_path / "b.bin").rename(row.current_path)
        args = cli.parser().parse_args(["retry"])
        assert retry_cli.cmd_retry(args, svc.settings) == 0
        out = capsys.readouterr().out
        assert "1 files asked for, 1 retried, 0 failed again, 0 missing" in out
        assert Batch.get_by_id(made.id).status == BatchStatus.SORTED

        assert retry_cli.cmd_retry(args, svc.settings) == 0
        assert "no ERROR file to retry" in capsys.readouterr().out
    monkeypatch.setattr(retry_cli, "daemon_address", lambda s: (url, {}))
    assert retry_cli.cmd_retry(args, svc.settings) == 1  # the server is gone
    assert "cannot reach the daemon" in capsys.readouterr().err
