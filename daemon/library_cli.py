"""`media-pipeline adopt [PATH…]` and `media-pipeline verify [--hash]`.

Both ask the running daemon (its single database writer and near-duplicate index
must see the new rows), follow the job with a progress line on stderr and print a
summary. Exit status: 0 when the job finished (verify: and found nothing wrong), 1
otherwise (verify: a file is MISSING or CORRUPT), 2 for a bad config.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import httpx

from daemon import config as cfg
from pipeline.states import JobStatus

POLL_SECONDS = 0.5
SHOWN = 20  # duplicates / findings printed; the job result holds up to 1000


def add_parsers(sub: Any, config_help: str) -> None:
    adopt = sub.add_parser(
        "adopt",
        help="record an existing library in place (default: sorted_dir)",
        description="Hash and record every file under each PATH without moving it. "
        "A folder outside the configured ones becomes a read-only reference root.",
    )
    adopt.add_argument("paths", nargs="*", metavar="PATH", help="folders to adopt")
    verify = sub.add_parser(
        "verify",
        help="check every sorted or adopted file is present and unchanged",
    )
    verify.add_argument(
        "--hash", action="store_true", help="recompute every SHA-256 (reads it all)"
    )
    for cmd in (adopt, verify):
        cmd.add_argument("-c", "--config", help=config_help)
        cmd.add_argument(
            "--no-wait", action="store_true", help="start the job and return"
        )


def daemon_address(settings: cfg.Settings) -> tuple[str, dict[str, str]]:
    """The running daemon's base URL and auth header, from the config."""
    host = settings.server.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    headers = {"X-API-Key": settings.auth.api_key} if settings.auth.api_key else {}
    return f"http://{host}:{settings.server.port}", headers


def run_job(
    settings: cfg.Settings, kind: str, path: str, body: dict[str, Any], wait: bool
) -> dict[str, Any] | None:
    """Start a library job and (unless not `wait`) follow it; None when it failed."""
    base, headers = daemon_address(settings)
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            response = client.post(path, json=body)
            if response.status_code >= 400:
                print(f"{kind}: {_message(response)}", file=sys.stderr)
                return None
            job = response.json()["data"]["job"]
            if not wait:
                print(f"{kind} job {job['id']} started")
                return job
            return follow(client, kind, job["id"])
    except httpx.HTTPError as exc:
        print(
            f"cannot reach the daemon at {base}: {type(exc).__name__} "
            "(is `media-pipeline run` running?)",
            file=sys.stderr,
        )
        return None


def follow(client: httpx.Client, kind: str, job_id: int) -> dict[str, Any]:
    """Poll the job until it ends, with a progress line on stderr."""
    while True:
        job = client.get("/api/library/status").json()["data"][kind]
        if job is None or job["id"] != job_id:
            raise httpx.HTTPError(f"{kind} job {job_id} is no longer listed")
        print(
            f"\r{kind}: {job['done']}/{job['total']} files ({job['progress']:.0f} %)",
            end="",
            file=sys.stderr,
            flush=True,
        )
        if job["status"] in (JobStatus.DONE, JobStatus.FAILED):
            print(file=sys.stderr)
            return job
        time.sleep(POLL_SECONDS)


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text[:300]))
    except ValueError:
        return response.text[:300]


def print_adopted(job: dict[str, Any]) -> None:
    result = job.get("result") or {}
    for root in result.get("roots", []):
        print(
            f"adopted {root['path']} ({root['kind']}): {root['found']} files found, "
            f"{root['recorded']} recorded, {root['updated']} updated, "
            f"{root['unchanged']} unchanged, {root['duplicate_count']} duplicates"
        )
        for dup in root["duplicates"][:SHOWN]:
            print(f"  duplicate {dup['path']} = {dup['duplicate_of_path']}")
        if root["duplicate_count"] > SHOWN:
            more = root["duplicate_count"] - SHOWN
            print(f"  … {more} more (GET /api/files?status=DUPLICATE)")
        for problem in root["problems"][:SHOWN]:
            print(f"  not recorded {problem['path']}: {problem['problem']}")
    for refused in result.get("refused", []):
        print(f"refused {refused['error']}")


def print_verified(job: dict[str, Any]) -> None:
    result = job.get("result") or {}
    print(job.get("message") or "")
    for moved in result.get("moved", [])[:SHOWN]:
        print(f"  moved    {moved['from']} -> {moved['to']}")
    for item in result.get("findings", [])[:SHOWN]:
        where = ""
        if item.get("batch"):
            where = f"  batch {item['batch']['name']}"
            if item["batch"].get("manifest"):
                where += f" ({item['batch']['manifest']})"
        remote = item.get("syncthing") or {}
        if remote.get("held") is not None:
            where += "  Syncthing remote: " + ("holds it" if remote["held"] else "no")
        print(f"  {item['status']:<8} {item['path']}  sha256 {item['sha256']}{where}")
        for copy in item.get("copies") or []:
            print(f"           same content at {copy}")
    if len(result.get("findings", [])) > SHOWN:
        print(f"  … see GET /api/library/status or the job {job['id']} result")


def cmd_adopt(args: argparse.Namespace, settings: cfg.Settings) -> int:
    paths = [os.path.abspath(p) for p in args.paths] or [None]
    status = 0
    for path in paths:
        body = {"path": path} if path else {}
        job = run_job(settings, "adopt", "/api/library/adopt", body, not args.no_wait)
        if job is None or job["status"] == JobStatus.FAILED:
            if job is not None:
                print(f"adopt failed: {job['message']}", file=sys.stderr)
            status = 1
        elif not args.no_wait:
            print_adopted(job)
    return status


def cmd_verify(args: argparse.Namespace, settings: cfg.Settings) -> int:
    body = {"hash": bool(args.hash)}
    job = run_job(settings, "verify", "/api/library/verify", body, not args.no_wait)
    if job is None:
        return 1
    if job["status"] == JobStatus.FAILED:
        print(f"verify failed: {job['message']}", file=sys.stderr)
        return 1
    if args.no_wait:
        return 0
    print_verified(job)
    return 1 if (job.get("result") or {}).get("findings") else 0
