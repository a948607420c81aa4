"""The adopt/verify commands' output and exit codes (the daemon side: integration)."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from daemon import config as cfg
from daemon import library_cli
from tests.conftest import free_port


def settings(port: int) -> cfg.Settings:
    return cfg.Settings.model_validate({"server": {"host": "0.0.0.0", "port": port}})


def test_address_uses_loopback_for_a_wildcard_host_and_sends_the_key() -> None:
    s = settings(8080)
    s.auth.api_key = "secret-key"
    assert library_cli.daemon_address(s) == (
        "http://127.0.0.1:8080",
        {"X-API-Key": "secret-key"},
    )
    s.server.host = "::1"
    assert library_cli.daemon_address(s)[0] == "http://[::1]:8080"


def test_no_daemon_is_a_clear_message_and_exit_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    s = settings(free_port())
    args = argparse.Namespace(paths=["/x"], no_wait=False, hash=True)
    assert library_cli.cmd_adopt(args, s) == 1
    assert library_cli.cmd_verify(args, s) == 1
    err = capsys.readouterr().err
    assert err.count("cannot reach the daemon") == 2
    assert "media-pipeline run" in err


def test_adopt_summary_lists_duplicates_problems_and_refusals(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dups = [
        {"path": f"/lib/c{n}.jpg", "duplicate_of_path": f"/lib/o{n}.jpg"}
        for n in range(25)
    ]
    job: dict[str, Any] = {
        "result": {
            "roots": [
                {
                    "path": "/lib",
                    "kind": "library",
                    "found": 60,
                    "recorded": 59,
                    "updated": 0,
                    "unchanged": 0,
                    "duplicate_count": 25,
                    "duplicates": dups,
                    "problems": [{"path": "/lib/bad.jpg", "problem": "cannot read"}],
                }
            ],
            "refused": [{"path": "/etc", "error": "/etc: is a system folder"}],
        }
    }
    library_cli.print_adopted(job)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "adopted /lib (library): 60 files found, 59 recorded, 0 updated, "
        "0 unchanged, 25 duplicates"
    )
    assert out[1] == "  duplicate /lib/c0.jpg = /lib/o0.jpg"
    assert sum(line.startswith("  duplicate ") for line in out) == library_cli.SHOWN
    assert "  … 5 more (GET /api/files?status=DUPLICATE)" in out
    assert "  not recorded /lib/bad.jpg: cannot read" in out
    assert out[-1] == "refused /etc: is a system folder"


def test_verify_summary_lists_findings_with_batch_and_remote(
    capsys: pytest.CaptureFixture[str],
) -> None:
    finding = {
        "status": "CORRUPT",
        "path": "/lib/2023/a.jpg",
        "sha256": "ab" * 32,
        "batch": {"name": "batch_000007", "manifest": "/sync/batch_000007/m.json"},
        "syncthing": {"held": True},
    }
    job = {
        "id": 3,
        "message": "2 files checked: 1 missing, 1 corrupt, 1 moved, 0 restored",
        "result": {
            "moved": [{"from": "/lib/x.jpg", "to": "/lib/y/x.jpg"}],
            "findings": [
                finding,
                {**finding, "status": "MISSING", "batch": None, "copies": ["/d/a.jpg"]},
            ],
        },
    }
    library_cli.print_verified(job)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == job["message"]
    assert out[1] == "  moved    /lib/x.jpg -> /lib/y/x.jpg"
    assert out[2] == (
        f"  CORRUPT  /lib/2023/a.jpg  sha256 {'ab' * 32}  batch batch_000007 "
        "(/sync/batch_000007/m.json)  Syncthing remote: holds it"
    )
    assert out[3].startswith("  MISSING  /lib/2023/a.jpg  sha256 ")
    assert out[4] == "           same content at /d/a.jpg"
