"""The `media-pipeline` command: run, check-config, status, trigger, adopt, verify."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

import httpx

from daemon import config as cfg
from daemon import library_cli, retry_cli
from pipeline import __version__
from pipeline.states import JobStatus

TRIGGERS = {
    "dedup": ("POST", "/api/dedup/start"),
    "batch": ("POST", "/api/batch/create"),
    "sync": ("POST", "/api/sync/start"),
    "sort": ("POST", "/api/sort/start"),
    "cleanup": ("POST", "/api/cleanup/run"),
}
EXIT_CONFIG = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="media-pipeline",
        description="Inbox → dedup → batches → Syncthing → sorted library.",
    )
    p.add_argument(
        "--version", action="version", version=f"media-pipeline {__version__}"
    )
    sub = p.add_subparsers(dest="command", required=True)
    config_help = "config file (else $MEDIA_PIPELINE_CONFIG, else /etc/media-pipeline/config.yaml)"
    for name, text in (
        ("run", "run the daemon in the foreground"),
        ("check-config", "validate the configuration"),
        ("status", "counts by status, batches and recent errors"),
        ("trigger", "ask the running daemon to start a job"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("-c", "--config", help=config_help)
        if name == "status":
            cmd.add_argument(
                "--json", action="store_true", help="machine-readable output"
            )
        if name == "trigger":
            cmd.add_argument("what", choices=sorted(TRIGGERS))
            cmd.add_argument(
                "--no-wait",
                action="store_true",
                help="print the daemon's answer and return at once (for scripts)",
            )
    library_cli.add_parsers(sub, config_help)
    retry_cli.add_parser(sub, config_help)
    return p


def load_or_exit(path: str | None) -> cfg.LoadedConfig:
    try:
        return cfg.load(path)
    except cfg.ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = load_or_exit(args.config)
    try:
        cfg.ensure_folders(loaded.settings)
    except cfg.ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    print("config OK")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from daemon.service import Service

    loaded = load_or_exit(args.config)
    try:
        return Service(loaded).run()
    except cfg.ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline import status
    from pipeline.db import open_database

    loaded = load_or_exit(args.config)
    db_path = loaded.settings.database.path
    if not db_path.exists():
        print(f"no database yet at {db_path} (the daemon has not run)", file=sys.stderr)
        return 1
    from pipeline.models import utcnow

    db = open_database(db_path, loaded.settings.database.busy_timeout_ms)
    try:
        data = status.summary(utcnow(), loaded.settings.batch)
    finally:
        db.close()
    print(json.dumps(data, indent=2) if args.json else format_status(data))
    return 0


def format_status(data: dict[str, Any]) -> str:
    lines = [f"files: {data['files']['total']}"]
    lines += [f"  {k:<10} {v}" for k, v in data["files"]["by_status"].items() if v]
    if "waiting" in data:
        lines.append(waiting_line(data["waiting"]))
    lines.append(f"near-duplicates flagged: {data['near_duplicates']}")
    lines.append(f"dated only by file mtime: {data['mtime_dated']}")
    lines.append(f"batches: {data['batches']['total']}")
    lines += [f"  {k:<10} {v}" for k, v in data["batches"]["by_status"].items() if v]
    if data["recent_errors"]:
        lines.append("recent errors:")
        lines += [
            f"  #{e['file_id']} {e['path']}: {e['error']}"
            for e in data["recent_errors"]
        ]
    return "\n".join(lines)


def waiting_line(wait: dict[str, Any]) -> str:
    """`102 files (31 MB) waiting for a batch — next at 22:41 or at 10 GB`."""
    line = f"{wait['files']} files ({human_bytes(wait['bytes'])}) waiting for a batch"
    if not wait["files"]:
        return line
    parts = []
    if wait.get("next_batch_at"):
        parts.append(f"at {local_time(wait['next_batch_at'])}")
    if wait.get("max_bytes"):
        parts.append(f"at {human_bytes(wait['max_bytes'])}")
    return line + (" — next " + " or ".join(parts) if parts else "")


def human_bytes(n: int) -> str:
    """Bytes in decimal-free units the way a person reads them: 31 MB, 1.5 GB."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    text = f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}"
    return f"{text} {unit}"


def local_time(stamp: str) -> str:
    """An ISO UTC stamp (`…Z`) as local HH:MM, with the date when it is not today."""
    from datetime import datetime

    when = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone()
    today = datetime.now(when.tzinfo).date()
    return when.strftime("%H:%M" if when.date() == today else "%Y-%m-%d %H:%M")


def cmd_trigger(args: argparse.Namespace) -> int:
    """Start a job in the running daemon and, unless --no-wait, follow it to the end."""
    settings = load_or_exit(args.config).settings
    method, path = TRIGGERS[args.what]
    host = (
        settings.server.host
        if settings.server.host not in ("0.0.0.0", "::")
        else "127.0.0.1"
    )
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    headers = {"X-API-Key": settings.auth.api_key} if settings.auth.api_key else {}
    base = f"http://{host}:{settings.server.port}"
    # No read timeout: a batch moved across disks answers when it is done.
    timeout = httpx.Timeout(connect=5, read=None, write=30, pool=5)
    with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
        try:
            response = client.request(method, path, json={})
        except httpx.HTTPError as exc:
            print(
                f"cannot reach the daemon at {base}{path}: {type(exc).__name__}",
                file=sys.stderr,
            )
            return 1
        answer = _json_or_text(response)
        if args.no_wait or response.status_code >= 400:
            print(json.dumps(answer, indent=2))
            return 0 if response.status_code < 400 else 1
        data = answer.get("data") or {}
        if isinstance(data.get("job"), dict):
            return Follower(client, args.what).follow(data["job"])
        print(summarize(args.what, data))
        return 0


POLL_FIRST, POLL_MAX = 0.1, 1.0
LOST_AFTER_SECONDS = 30.0  # the daemon unreachable this long: stop following
PROGRESS_EVERY_SECONDS = 5.0  # progress lines when stderr is not a terminal


class Follower:
    """Polls GET /api/jobs/{id} until the job ends; a progress line meanwhile."""

    def __init__(
        self,
        client: httpx.Client,
        kind: str,
        *,
        out: TextIO | None = None,
        err: TextIO | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.kind = kind
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.sleep = sleep
        self.clock = clock
        self.tty = self.err.isatty()
        self._shown = ""
        self._shown_at = -PROGRESS_EVERY_SECONDS

    def follow(self, job: dict[str, Any]) -> int:
        """Exit code: 0 DONE without errors, 1 FAILED or with errors, 130 on Ctrl-C."""
        delay = POLL_FIRST
        lost_since: float | None = None
        try:
            while job.get("status") not in (JobStatus.DONE, JobStatus.FAILED):
                self.progress(job)
                self.sleep(delay)
                delay = min(POLL_MAX, delay * 2)
                try:
                    answer = self.client.get(f"/api/jobs/{job['id']}")
                    answer.raise_for_status()
                    job = answer.json()["data"]["job"]
                    lost_since = None
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    lost_since = lost_since or self.clock()
                    if self.clock() - lost_since >= LOST_AFTER_SECONDS:
                        self.clear()
                        print(
                            f"{self.kind}: lost the daemon while following job "
                            f"{job['id']} ({type(exc).__name__})",
                            file=self.err,
                        )
                        return 1
        except KeyboardInterrupt:
            self.clear()
            print(
                f"{self.kind}: stopped following; job {job['id']} goes on in the daemon",
                file=self.err,
            )
            return 130
        self.clear()
        print(summarize(self.kind, {"job": job}), file=self.out)
        failed = job["status"] == JobStatus.FAILED or bool(job.get("errors"))
        return 1 if failed else 0

    def progress(self, job: dict[str, Any]) -> None:
        line = progress_line(self.kind, job)
        if self.tty:
            print(f"\r{line}\x1b[K", end="", file=self.err, flush=True)
            self._shown = line
        elif line != self._shown and (
            self.clock() - self._shown_at >= PROGRESS_EVERY_SECONDS
        ):
            print(line, file=self.err, flush=True)
            self._shown, self._shown_at = line, self.clock()

    def clear(self) -> None:
        if self.tty and self._shown:
            print("\r\x1b[K", end="", file=self.err, flush=True)


def progress_line(kind: str, job: dict[str, Any]) -> str:
    """`sort: 45/102 (44 %), 0 errors` while a job runs."""
    total, done = job.get("total") or 0, job.get("done") or 0
    if not total:
        return f"{kind}: {str(job.get('status', JobStatus.RUNNING)).lower()}…"
    errors = job.get("errors") or 0
    return f"{kind}: {done}/{total} ({job.get('progress', 0):.0f} %), {errors} errors"


def _seconds(job: dict[str, Any]) -> str:
    try:
        start = datetime.fromisoformat(job["started_at"].removesuffix("Z"))
        end = datetime.fromisoformat(job["finished_at"].removesuffix("Z"))
    except (KeyError, AttributeError, TypeError, ValueError):
        return ""
    return f" in {(end - start).total_seconds():.1f} s"


def _megabytes(size: int | None) -> str:
    return f"{(size or 0) / 1e6:.1f} MB"


def summarize(kind: str, data: dict[str, Any]) -> str:
    """The one summary line of `trigger KIND` from the daemon's answer or final job."""
    job = data.get("job")
    if isinstance(job, dict):
        return _job_summary(kind, job)
    if kind == "batch":
        made = data.get("batch")
        if not made:
            return "batch: nothing waits for a batch"
        return (
            f"batch: {made['name']} created, {made['file_count']} files "
            f"({_megabytes(made.get('size_bytes'))})"
        )
    if kind == "sync":
        moved = data.get("batches") or []
        names = ", ".join(b["name"] for b in moved)
        return f"sync: {len(moved)} batches handed to Syncthing" + (
            f" ({names})" if names else ""
        )
    if kind == "cleanup":
        actions = data.get("actions") or []
        done = [a for a in actions if a.get("action") != "skip"]
        by: dict[str, int] = {}
        for action in done:
            by[action["action"]] = by.get(action["action"], 0) + 1
        detail = ", ".join(f"{n} {name}" for name, n in sorted(by.items()))
        skipped = len(actions) - len(done)
        return (
            f"cleanup: {len(done)} actions"
            + (f" ({detail})" if detail else "")
            + f", {skipped} left in place"
        )
    return f"{kind}: {json.dumps(data)}"


def _job_summary(kind: str, job: dict[str, Any]) -> str:
    took = _seconds(job)
    if job.get("status") == JobStatus.FAILED:
        return f"{kind}: FAILED{took}: {job.get('message') or 'see the daemon log'}"
    result = job.get("result") or {}
    if kind == "sort" and "batches" in result:
        reports = result["batches"]
        if result.get("dry_run"):
            planned = sum(len(r.get("planned", [])) for r in reports)
            return f"sort (dry run): {planned} files planned, nothing moved{took}"
        sorted_ = sum(r.get("sorted", 0) for r in reports)
        dups = sum(r.get("duplicates", 0) for r in reports)
        errors = sum(r.get("errors", 0) for r in reports)
        dup_text = f", {dups} duplicates" if dups else ""
        return f"sort: {sorted_} sorted{dup_text}, {errors} errors{took}"
    if kind == "sync" and "handed_over" in result:
        handed, rescanned = len(result["handed_over"]), len(result["rescanned"])
        return (
            f"sync: {handed} batches handed to Syncthing, {rescanned} rescanned, "
            f"{job.get('errors') or 0} errors{took}"
        )
    if kind == "dedup" and "found" in result:
        text = (
            f"dedup: {result['found']} files in the inbox, "
            f"{result.get('processed', 0)} taken: {result.get('unique', 0)} unique, "
            f"{result.get('duplicates', 0)} duplicates, "
            f"{result.get('skipped', 0)} skipped, {result.get('errors', 0)} errors"
        )
        if result.get("arriving"):
            text += f"; {result['arriving']} still arriving, left for the watcher"
        return text + took
    done, errors = job.get("done") or 0, job.get("errors") or 0
    return f"{kind}: done, {done} items, {errors} errors{took}"


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"status": "error", "message": response.text[:500]}


def cmd_adopt(args: argparse.Namespace) -> int:
    return library_cli.cmd_adopt(args, load_or_exit(args.config).settings)


def cmd_verify(args: argparse.Namespace) -> int:
    return library_cli.cmd_verify(args, load_or_exit(args.config).settings)


def cmd_retry(args: argparse.Namespace) -> int:
    return retry_cli.cmd_retry(args, load_or_exit(args.config).settings)


COMMANDS = {
    "run": cmd_run,
    "check-config": cmd_check_config,
    "status": cmd_status,
    "trigger": cmd_trigger,
    "adopt": cmd_adopt,
    "verify": cmd_verify,
    "retry": cmd_retry,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
