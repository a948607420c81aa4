"""Cleanup: empty folders, sorted batch folders, stale temp files and partial copies,
rotated logs, finished job rows and an occasional database optimize.

`run_cleanup` first plans every action from one look at the disk and the database,
then (unless `dry_run`) carries the plan out, so a dry run lists exactly what a real
run would do. It never deletes a media or sidecar file (our own partial copies,
`.mp-partial-*`, excepted: their content is safe elsewhere), never follows a symlink,
never leaves the configured folders and never touches what Syncthing owns
(`.stfolder`, `.stignore`, `.stversions`, `.syncthing.*.tmp`). A per-path error
becomes a `skip` action and the run goes on.

The rules are planned in pipeline/cleanup_plan.py; each step removes its path through
pipeline/cleanup_steps.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime

from loguru import logger

from pipeline.cleanup_plan import Planner
from pipeline.cleanup_steps import (
    ACTIONS,
    Action,
    Step,
    batch_contents,
    is_user_file,
    reason_of,
    syncthing_owned,
)
from pipeline.context import Context
from pipeline.fsops import TEMP_PREFIX

__all__ = [
    "ACTIONS",
    "TEMP_PREFIX",
    "Action",
    "actions_json",
    "batch_contents",
    "is_user_file",
    "run_cleanup",
    "syncthing_owned",
]


def actions_json(actions: list[Action]) -> list[dict[str, str]]:
    """Actions as the API answers them: `[{action, path, reason}]`."""
    return [asdict(action) for action in actions]


def run_cleanup(
    ctx: Context, dry_run: bool = False, now: datetime | None = None
) -> list[Action]:
    """Plan and (unless `dry_run`) carry out every cleanup rule; returns the actions.

    `now` (naive UTC) replaces both the database clock and the wall clock used for
    file ages. Runs are serialised; a dry run writes nothing, on disk or in the
    database.
    """
    db_now, wall_now = _clocks(ctx, now)
    with ctx.shared.cleanup_lock:
        steps = Planner(ctx, db_now, wall_now).plan()
        actions = [_carry_out(step, dry_run) for step in steps]
    done = sum(action.action != "skip" for action in actions)
    logger.bind(event="cleanup", status="dry_run" if dry_run else "finished").info(
        "cleanup {}: {} actions, {} skipped",
        "dry run" if dry_run else "run",
        done,
        len(actions) - done,
    )
    return actions


def _clocks(ctx: Context, now: datetime | None) -> tuple[datetime, float]:
    if now is None:
        return ctx.clock(), time.time()
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    return now, now.replace(tzinfo=UTC).timestamp()


def _carry_out(step: Step, dry_run: bool) -> Action:
    action = step.action
    if not dry_run and step.apply is not None:
        try:
            step.apply()
        except FileNotFoundError:
            action = Action("skip", action.path, "vanished before it could be removed")
        except Exception as exc:  # one path failing must not stop the run
            action = Action("skip", action.path, f"{action.action}: {reason_of(exc)}")
    _log(action, dry_run)
    return action


def _log(action: Action, dry_run: bool) -> None:
    if action.action == "skip":
        status, level = "skipped", "WARNING"
    else:
        status, level = ("dry_run" if dry_run else "done"), "INFO"
    logger.bind(event="cleanup", status=status).log(
        level, "{} {}: {}", action.action, action.path, action.reason
    )
