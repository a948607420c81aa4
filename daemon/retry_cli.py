"""`media-pipeline retry [ID…]`: failed files resume at the stage they failed in.

Asks the running daemon (POST /api/files/retry), follows the retry job and prints
one summary line. Exit status: 0 when every retried file got through, 1 when some
failed again or the daemon could not be reached, 2 for a bad config.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from daemon import config as cfg
from daemon.library_cli import daemon_address
from pipeline.states import JobStatus

POLL_SECONDS = 0.3


def add_parser(sub: Any, config_help: str) -> None:
    cmd = sub.add_parser(
        "retry",
        help="retry ERROR files (default: every one) at the stage they failed in",
    )
    cmd.add_argument("ids", nargs="*", type=int, metavar="ID", help="file ids")
    cmd.add_argument("-c", "--config", help=config_help)
    cmd.add_argument("--no-wait", action="store_true", help="ask and return at once")


def cmd_retry(args: argparse.Namespace, settings: cfg.Settings) -> int:
    base, headers = daemon_address(settings)
    body = {"ids": args.ids} if args.ids else {}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            response = client.post("/api/files/retry", json=body)
            answer = response.json()
            if response.status_code >= 400:
                print(f"retry: {answer.get('message')}", file=sys.stderr)
                return 1
            data = answer["data"]
            job = data.get("job")
            if job is None:
                print("retry: no ERROR file to retry")
                return 0
            if args.no_wait:
                print(f"retry: {data['retried']} files asked for; job {job['id']}")
                return 0
            job = follow(client, job)
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        print(
            f"cannot reach the daemon at {base}: {type(exc).__name__} "
            "(is `media-pipeline run` running?)",
            file=sys.stderr,
        )
        return 1
    print(summary(data["retried"], job))
    result = job.get("result") or {}
    trouble = result.get("failed_again") or result.get("missing")
    return 0 if job["status"] == JobStatus.DONE and not trouble else 1


def follow(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    """Poll GET /api/jobs/{id} until the job ends, a progress line on stderr."""
    while job["status"] not in (JobStatus.DONE, JobStatus.FAILED):
        print(
            f"\rretry: {job.get('done', 0)}/{job.get('total', 0)} files",
            end="",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(POLL_SECONDS)
        answer = client.get(f"/api/jobs/{job['id']}")
        answer.raise_for_status()
        job = answer.json()["data"]["job"]
    print("\r\x1b[K", end="", file=sys.stderr, flush=True)
    return job


def summary(asked: int, job: dict[str, Any]) -> str:
    """`retry: 12 files asked for, 12 retried, 0 failed again, 0 missing`."""
    if job["status"] == JobStatus.FAILED:
        return f"retry: job {job['id']} failed: {job.get('message')}"
    result = job.get("result") or {}
    return (
        f"retry: {asked} files asked for, {result.get('retried', 0)} retried, "
        f"{result.get('failed_again', 0)} failed again, "
        f"{result.get('missing', 0)} missing"
    )
