"""The `media-pipeline` command: run, check-config, status, trigger, adopt, verify."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from daemon import config as cfg
from daemon import library_cli, retry_cli
from daemon.jobfollow import Follower, json_or_text, summarize
from daemon.jobfollow import progress_line as progress_line  # re-exported (tests)
from pipeline import __version__

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
        answer = json_or_text(response)
        if args.no_wait or response.status_code >= 400:
            print(json.dumps(answer, indent=2))
            return 0 if response.status_code < 400 else 1
        data = answer.get("data") or {}
        if isinstance(data.get("job"), dict):
            return Follower(client, args.what).follow(data["job"])
        print(summarize(args.what, data))
        return 0


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
