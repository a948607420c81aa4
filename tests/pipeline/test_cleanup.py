"""Cleanup: each rule removes what it should and keeps what it must, on real folders."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline import cleanup
from pipeline.cleanup import Action, actions_json, run_cleanup
from pipeline.context import Context
from pipeline.fsops import TEMP_PREFIX
from pipeline.models import (
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    MoveJournal,
    MoveState,
    utcnow,
)

HOUR = 3600
DAY = 24 * HOUR
Service = Callable[..., Any]


def age(path: Path, seconds: float) -> Path:
    """Set `path`'s mtime `seconds` in the past (the link itself for a symlink)."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def put(path: Path, seconds: float = 0, data: bytes = b"data") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return age(path, seconds) if seconds else path


def folder(path: Path, seconds: float = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return age(path, seconds) if seconds else path


def listing(top: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[Any, ...]]:
    """Every entry under `top` (links not followed) with its kind, size and mtime."""
    out: dict[str, tuple[Any, ...]] = {}
    pending = [top]
    while pending:
        for entry in os.scandir(pending.pop()):
            rel = os.path.relpath(entry.path, top)
            if rel in skip:
                continue
            st = entry.stat(follow_symlinks=False)
            if entry.is_symlink():
                out[rel] = ("link", os.readlink(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                out[rel] = ("dir", st.st_mtime_ns)
                pending.append(Path(entry.path))
            else:
                out[rel] = ("file", st.st_size, st.st_mtime_ns)
    return out


def tree(tmp_path: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under tmp_path but the database and the live log file."""
    live = ("db.sqlite", "db.sqlite-wal", "db.sqlite-shm", "log/media-pipeline.log")
    return listing(tmp_path, skip=live)


def pairs(actions: list[Action], drop: tuple[str, ...] = ("optimize_db",)) -> set:
    return {(a.action, a.path) for a in actions if a.action not in drop}


def add_batch(ctx: Context, name: str, status: str, days_ago: float | None) -> None:
    when = utcnow() - timedelta(days=days_ago) if days_ago is not None else None
    ctx.writer.call(
        lambda: Batch.create(name=name, status=status, sorted_at=when, updated_at=when)
    )


def add_journal(ctx: Context, tmp: Path, state: str) -> None:
    ctx.writer.call(
        lambda: MoveJournal.create(
            src=str(tmp.parent / "src.jpg"),
            dst=str(tmp.parent / "dst.jpg"),
            tmp=str(tmp),
            method="copy",
            state=state,
        )
    )


def add_job(ctx: Context, status: str, days_ago: float) -> int:
    when = utcnow() - timedelta(days=days_ago)
    finished = when if status in (JobStatus.DONE, JobStatus.FAILED) else None
    return ctx.writer.call(
        lambda: Job.create(
            kind="sort",
            status=status,
            created_at=when,
            started_at=when,
            finished_at=finished,
        ).id
    )


def test_empty_folders_go_bottom_up_and_roots_and_recent_folders_stay(
    service: Service,
) -> None:
    svc = service(cleanup={"min_folder_age_seconds": 600})
    r = svc.ctx.roots
    for path in (r.inbox / "a/b/c", r.inbox / "a/b", r.inbox / "a"):
        folder(path, HOUR)
    folder(r.inbox / "recent")
    folder(r.inbox / "old_parent/fresh_child")
    age(r.inbox / "old_parent", HOUR)
    put(r.inbox / "holds_file/IMG_0001.jpg", HOUR)
    age(r.inbox / "holds_file", HOUR)
    folder(r.batch_dir / "x", HOUR)
    folder(r.sync_dir / "y/z", HOUR)
    age(r.sync_dir / "y", HOUR)
    folder(r.sorted_dir / "2020/01", HOUR)  # the library is not swept
    folder(r.duplicates_dir / "d", HOUR)
    for root in (r.inbox, r.batch_dir, r.sync_dir, r.temp_dir):
        age(root, DAY)

    actions = [a for a in run_cleanup(svc.ctx) if a.action != "optimize_db"]

    assert [(a.action, a.path) for a in actions] == [
        ("remove_empty_dir", str(r.inbox / "a/b/c")),
        ("remove_empty_dir", str(r.inbox / "a/b")),
        ("remove_empty_dir", str(r.inbox / "a")),
        ("remove_empty_dir", str(r.batch_dir / "x")),
        ("remove_empty_dir", str(r.sync_dir / "y/z")),
        ("remove_empty_dir", str(r.sync_dir / "y")),
    ]
    assert not (r.inbox / "a").exists() and not (r.sync_dir / "y").exists()
    for kept in (
        r.inbox / "recent",
        r.inbox / "old_parent/fresh_child",
        r.inbox / "holds_file/IMG_0001.jpg",
        r.sorted_dir / "2020/01",
        r.duplicates_dir / "d",
    ):
        assert kept.exists(), kept
    for root in (r.inbox, r.batch_dir, r.sync_dir, r.temp_dir, r.sorted_dir):
        assert root.is_dir()


def test_what_syncthing_owns_is_never_touched(service: Service) -> None:
    svc = service(
        cleanup={
            "min_folder_age_seconds": 0,
            "temp_max_age_hours": 0,
            "batch_retention_days": 0,
        }
    )
    r = svc.ctx.roots
    owned = [
        folder(r.sync_dir / ".stfolder", 10 * DAY),
        put(r.sync_dir / ".stignore", 10 * DAY),
        folder(r.sync_dir / ".stversions/batch_000001/2024", 10 * DAY),
        put(r.sync_dir / ".stversions/.mp-partial-00000000-IMG_1.jpg", 10 * DAY),
        put(r.sync_dir / ".syncthing.IMG_2.jpg.tmp", 10 * DAY),
        put(r.sync_dir / "batch_000002/.syncthing.IMG_3.jpg.tmp", 10 * DAY),
        folder(r.inbox / ".stfolder", 10 * DAY),  # an inbox shared by a phone
    ]
    age(r.sync_dir / ".stversions/batch_000001", 10 * DAY)
    age(r.sync_dir / ".stversions", 10 * DAY)
    age(r.sync_dir / "batch_000002", 10 * DAY)
    add_batch(svc.ctx, "batch_000002", BatchStatus.SORTED, 1)
    before = tree(svc.ctx.roots.sync_dir.parent)

    actions = run_cleanup(svc.ctx)

    assert all(path.exists() for path in owned)
    assert tree(svc.ctx.roots.sync_dir.parent) == before
    assert pairs(actions) == {("skip", str(r.sync_dir / "batch_000002"))}
    skip = next(a for a in actions if a.action == "skip")
    assert ".syncthing.IMG_3.jpg.tmp" in skip.reason


def test_sorted_batch_folders_go_only_when_old_and_holding_just_the_manifest(
    service: Service,
) -> None:
    svc = service(cleanup={"min_folder_age_seconds": 3600, "batch_retention_days": 30})
    ctx, r = svc.ctx, svc.ctx.roots

    def batch_folder(root: Path, name: str, *extra: str) -> Path:
        put(root / name / "manifest.json", data=b"{}")
        put(root / name / "SHA256SUMS")
        for rel in extra:
            if rel.endswith("/"):
                folder(root / name / rel)
            else:
                put(root / name / rel, data=b"\xff\xd8 photo")
        return root / name

    done = batch_folder(r.sync_dir, "batch_000001", "2024/03/")
    media = batch_folder(r.sync_dir, "batch_000002", "2024/03/IMG_1.jpg")
    recent = batch_folder(r.sync_dir, "batch_000003")
    syncing = batch_folder(r.sync_dir, "batch_000004", "IMG_2.jpg")
    local = batch_folder(r.batch_dir, "batch_000005")  # sorted without Syncthing
    stray = batch_folder(r.sync_dir, "batch_000099")  # no such batch
    add_batch(ctx, "batch_000001", BatchStatus.SORTED, 40)
    add_batch(ctx, "batch_000002", BatchStatus.SORTED, 40)
    add_batch(ctx, "batch_000003", BatchStatus.SORTED, 5)
    add_batch(ctx, "batch_000004", BatchStatus.SYNCED, 40)
    add_batch(ctx, "batch_000005", BatchStatus.SORTED, 40)
    media_before = listing(media)

    actions = run_cleanup(ctx)

    assert [(a.action, a.path) for a in actions if a.action != "optimize_db"] == [
        ("remove_batch_folder", str(done)),
        ("skip", str(media)),
        ("remove_batch_folder", str(local)),
    ]
    assert "IMG_1.jpg" in actions[1].reason
    assert not done.exists() and not local.exists()
    assert listing(media) == media_before
    for kept in (recent, syncing, stray):
        assert (kept / "manifest.json").is_file()
    assert (syncing / "IMG_2.jpg").is_file()
    assert r.sync_dir.is_dir() and r.batch_dir.is_dir()


def test_temp_files_and_abandoned_partials_go_but_media_and_held_partials_stay(
    service: Service,
) -> None:
    svc = service(cleanup={"min_folder_age_seconds": 0, "temp_max_age_hours": 24})
    ctx, r = svc.ctx, svc.ctx.roots
    old = 2 * DAY
    stale = put(r.temp_dir / f"{TEMP_PREFIX}old.bin", old)
    fresh = put(r.temp_dir / f"{TEMP_PREFIX}new.bin")
    nested = put(r.temp_dir / f"sub/{TEMP_PREFIX}stale.dat", old)
    age(r.temp_dir / "sub", old)
    own_preview = put(r.temp_dir / f"{TEMP_PREFIX}thumb-1-ab.jpg", old)
    # Not the daemon's (no prefix): never deleted, whatever their age or kind.
    foreign = [
        put(r.temp_dir / "old.bin", old),
        put(r.temp_dir / "IMG_0001.jpg", old),
        put(r.temp_dir / "sub/stale.dat", old),
    ]
    orphan = put(r.inbox / ".mp-partial-0a0a0a0a-IMG_1.jpg", old)
    user_media = [
        put(r.inbox / "~IMG_2.jpg", old),
        put(r.inbox / "IMG_3.tmp.jpg", old),
        put(r.inbox / "IMG_4.jpg.part.mov", old),
        put(r.sync_dir / ".IMG_5.jpg", old),
        put(r.batch_dir / "stale.tmp", old),  # temp-like, but outside temp_dir
    ]
    pending = put(r.sorted_dir / "2024/01/01/.mp-partial-1b1b1b1b-IMG_6.jpg", old)
    failed = put(r.duplicates_dir / ".mp-partial-2c2c2c2c-IMG_7.jpg", old)
    young = put(r.batch_dir / ".mp-partial-3d3d3d3d-IMG_8.jpg")
    abandoned = put(r.batch_dir / "b/.mp-partial-4e4e4e4e-IMG_9.jpg", old)
    age(r.batch_dir / "b", old)
    add_journal(ctx, pending, MoveState.PENDING)
    add_journal(ctx, failed, MoveState.FAILED)
    add_journal(ctx, abandoned, MoveState.ABANDONED)

    actions = run_cleanup(ctx)

    assert pairs(actions) == {
        ("remove_temp", str(stale)),
        ("remove_temp", str(nested)),
        ("remove_temp", str(own_preview)),
        ("remove_partial", str(orphan)),
        ("skip", str(failed)),
        ("remove_partial", str(abandoned)),
        ("remove_empty_dir", str(r.batch_dir / "b")),
    }
    for gone in (stale, nested, own_preview, orphan, abandoned):
        assert not gone.exists(), gone
    for kept in (fresh, *foreign, pending, failed, young, *user_media):
        assert kept.is_file(), kept
    assert r.temp_dir.is_dir()


def test_rotated_logs_go_but_the_current_log_and_other_files_stay(
    service: Service,
) -> None:
    svc = service(cleanup={"log_retention_days": 14})
    log = svc.ctx.roots.log_dir
    old = [
        put(log / "media-pipeline.2020-01-01_00-00-00_000000.log", 20 * DAY),
        put(log / "media-pipeline.2020-01-02_00-00-00_000000.log.gz", 20 * DAY),
    ]
    kept = [
        put(log / "media-pipeline.2099-01-01_00-00-00_000000.log", 1 * DAY),
        put(log / "other.log", 20 * DAY),
        put(log / "media-pipeline.2020-01-03.log.jpg", 20 * DAY),
    ]
    current = log / "media-pipeline.log"
    assert current.is_file()
    age(current, 20 * DAY)

    actions = run_cleanup(svc.ctx)

    assert pairs(actions) == {("remove_log", str(path)) for path in old}
    assert not any(path.exists() for path in old)
    assert current.is_file() and all(path.is_file() for path in kept)


def test_finished_jobs_past_retention_are_deleted_and_the_rest_kept(
    service: Service,
) -> None:
    svc = service(cleanup={"job_retention_days": 30})
    ctx = svc.ctx
    add_job(ctx, JobStatus.DONE, 40)
    add_job(ctx, JobStatus.FAILED, 40)
    recent = add_job(ctx, JobStatus.DONE, 2)
    running = add_job(ctx, JobStatus.RUNNING, 40)

    actions = run_cleanup(ctx)

    assert pairs(actions) == {("delete_jobs", "jobs")}
    assert next(a for a in actions if a.action == "delete_jobs").reason.startswith("2 ")
    assert {job.id for job in Job.select()} == {recent, running}


def populate(ctx: Context) -> None:
    """One thing for every rule, nothing that would be skipped."""
    r = ctx.roots
    folder(r.inbox / "a/b", 2 * DAY)
    age(r.inbox / "a", 2 * DAY)
    put(r.sync_dir / "batch_000001/manifest.json", data=b"{}")
    put(r.sync_dir / "batch_000001/SHA256SUMS")
    folder(r.sync_dir / "batch_000001/2024/05")
    add_batch(ctx, "batch_000001", BatchStatus.SORTED, 40)
    put(r.temp_dir / f"{TEMP_PREFIX}scratch.bin", 2 * DAY)
    put(r.sorted_dir / "2024/05/.mp-partial-5f5f5f5f-IMG_1.jpg", 2 * DAY)
    put(r.sorted_dir / "2024/05/IMG_2.jpg", 2 * DAY)
    put(r.log_dir / "media-pipeline.2020-01-01_00-00-00_000000.log", 30 * DAY)
    add_job(ctx, JobStatus.DONE, 40)


def test_dry_run_lists_the_same_actions_and_changes_nothing_then_a_rerun_is_idle(
    service: Service, tmp_path: Path
) -> None:
    svc = service(cleanup={"min_folder_age_seconds": 60})
    ctx = svc.ctx
    populate(ctx)
    before, jobs_before = tree(tmp_path), Job.select().count()

    dry = run_cleanup(ctx, dry_run=True)

    assert tree(tmp_path) == before and Job.select().count() == jobs_before
    assert {a.action for a in dry} == {
        "remove_empty_dir",
        "remove_batch_folder",
        "remove_temp",
        "remove_partial",
        "remove_log",
        "delete_jobs",
        "optimize_db",
    }

    real = run_cleanup(ctx)

    assert real == dry
    after = tree(tmp_path)
    assert "inbox/a" not in after and "sync/batch_000001" not in after
    assert (
        f"temp/{TEMP_PREFIX}scratch.bin" not in after
        and "sorted/2024/05/IMG_2.jpg" in after
    )
    assert Job.select().count() == jobs_before - 1
    assert run_cleanup(ctx) == []
    assert run_cleanup(ctx, dry_run=True) == []


def test_symlinks_are_never_followed(service: Service, tmp_path: Path) -> None:
    svc = service(
        cleanup={
            "min_folder_age_seconds": 0,
            "temp_max_age_hours": 0,
            "log_retention_days": 0,
            "batch_retention_days": 0,
        }
    )
    ctx, r = svc.ctx, svc.ctx.roots
    outside = tmp_path / "outside"
    folder(outside / "empty", DAY)
    put(outside / ".mp-partial-6a6a6a6a-IMG_1.jpg", DAY)
    put(outside / "junk.bin", DAY)
    put(outside / "manifest.json", DAY)
    age(outside, DAY)
    links = {
        r.inbox / "link": outside,
        r.temp_dir / "link": outside,
        r.temp_dir / "file-link": outside / "junk.bin",
        r.sync_dir / "batch_000001": outside,
        r.log_dir
        / "media-pipeline.2020-01-01_00-00-00_000000.log": outside
        / "junk.bin",
    }
    for link, target in links.items():
        link.symlink_to(target)
        age(link, DAY)
    add_batch(ctx, "batch_000001", BatchStatus.SORTED, 40)
    before = listing(outside)

    actions = run_cleanup(ctx)

    assert listing(outside) == before
    assert all(link.is_symlink() for link in links)
    assert pairs(actions) == set()
    touched = {a.path for a in actions if a.action != "optimize_db"}
    assert not touched & {str(link) for link in links}
    assert not any(path.startswith(str(outside)) for path in touched)


def test_a_path_that_changes_after_planning_is_skipped_and_the_run_goes_on(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = service(cleanup={"min_folder_age_seconds": 0, "temp_max_age_hours": 1})
    r = svc.ctx.roots
    busy = folder(r.inbox / "busy", DAY)
    idle = folder(r.inbox / "idle", DAY)
    vanishing = put(r.temp_dir / f"{TEMP_PREFIX}gone.bin", DAY)
    later = put(r.temp_dir / f"{TEMP_PREFIX}later.bin", DAY)
    real_carry_out = cleanup._carry_out
    raced: list[bool] = []

    def racing(step: Any, dry_run: bool) -> Action:
        if not raced:  # a copy starts and a file vanishes between plan and action
            raced.append(True)
            put(busy / "IMG_1.jpg")
            vanishing.unlink()
        return real_carry_out(step, dry_run)

    monkeypatch.setattr(cleanup, "_carry_out", racing)
    actions = {a.path: a for a in run_cleanup(svc.ctx)}

    assert actions[str(vanishing)].action == "skip"
    assert "vanished" in actions[str(vanishing)].reason
    assert actions[str(busy)].action == "skip"
    assert (busy / "IMG_1.jpg").is_file()
    assert actions[str(later)].action == "remove_temp" and not later.exists()
    assert actions[str(idle)].action == "remove_empty_dir" and not idle.exists()


def test_a_temp_dir_overlapping_the_inbox_deletes_nothing_there(
    service: Service, tmp_path: Path
) -> None:
    # The config refuses overlapping folders (daemon/config_checks.py); cleanup
    # still defends itself should roots ever arrive that way.
    svc = service(cleanup={"temp_max_age_hours": 0, "min_folder_age_seconds": 0})
    svc.ctx.roots = replace(svc.ctx.roots, temp_dir=tmp_path / "inbox")
    inbox = svc.ctx.roots.inbox
    files = [put(inbox / "notes.txt", DAY), put(inbox / "IMG_1.jpg", DAY)]

    actions = run_cleanup(svc.ctx)

    assert all(path.is_file() for path in files)
    assert pairs(actions) == {("skip", str(inbox))}
    assert "overlaps paths.inbox" in actions[0].reason


def test_the_database_inside_temp_dir_is_never_removed(
    service: Service, tmp_path: Path
) -> None:
    db = tmp_path / "temp" / "state.sqlite"
    svc = service(database={"path": str(db)}, cleanup={"temp_max_age_hours": 0})
    for path in db.parent.iterdir():
        age(path, DAY)

    actions = run_cleanup(svc.ctx)

    assert db.is_file()
    assert pairs(actions) == set()


def test_now_ages_everything_and_actions_serialise_for_the_api(
    service: Service,
) -> None:
    svc = service(cleanup={"temp_max_age_hours": 24})
    scratch = put(svc.ctx.roots.temp_dir / f"{TEMP_PREFIX}scratch.bin")

    assert pairs(run_cleanup(svc.ctx, dry_run=True)) == set()
    later = utcnow() + timedelta(days=2)
    actions = run_cleanup(svc.ctx, dry_run=True, now=later)

    assert pairs(actions) == {("remove_temp", str(scratch))}
    assert actions_json(actions)[0] == {
        "action": "remove_temp",
        "path": str(scratch),
        "reason": "temp file older than 24 h",
    }
    assert scratch.is_file()


def test_a_configured_folder_nested_in_another_is_never_removed(
    service: Service, tmp_path: Path
) -> None:
    svc = service(cleanup={"min_folder_age_seconds": 0})
    svc.ctx.roots = replace(svc.ctx.roots, batch_dir=tmp_path / "inbox" / "batches")
    svc.ctx.roots.batch_dir.mkdir()
    r = svc.ctx.roots
    folder(r.batch_dir / "empty", DAY)
    age(r.batch_dir, DAY)

    actions = run_cleanup(svc.ctx)

    assert pairs(actions) == {("remove_empty_dir", str(r.batch_dir / "empty"))}
    assert r.batch_dir.is_dir()


def _race_before_first_action(
    monkeypatch: pytest.MonkeyPatch, race: Callable[[], None]
) -> None:
    """Run `race` once, after planning and before the first action is carried out."""
    real_carry_out = cleanup._carry_out
    raced: list[bool] = []

    def racing(step: Any, dry_run: bool) -> Action:
        if not raced:
            raced.append(True)
            race()
        return real_carry_out(step, dry_run)

    monkeypatch.setattr(cleanup, "_carry_out", racing)


@pytest.mark.parametrize("old_one", ["renamed", "deleted"])
def test_a_partial_replaced_at_the_same_name_after_planning_is_kept(
    service: Service, monkeypatch: pytest.MonkeyPatch, old_one: str
) -> None:
    """The deletion re-checks identity: a new file at the planned name stays.

    "deleted" frees the inode first, which ext4 gives straight to the new file, so
    the check must not rest on the inode number alone.
    """
    svc = service(cleanup={"temp_max_age_hours": 1})
    partial = put(svc.ctx.roots.batch_dir / "b" / f"{cleanup.TEMP_PREFIX}x", DAY)

    def replace() -> None:
        if old_one == "renamed":
            partial.rename(partial.with_name("kept-aside"))
        else:
            partial.unlink()
        put(partial, data=b"someone else's bytes")

    _race_before_first_action(monkeypatch, replace)
    actions = {a.path: a for a in run_cleanup(svc.ctx)}

    assert actions[str(partial)].action == "skip"
    assert "replaced" in actions[str(partial)].reason
    assert partial.read_bytes() == b"someone else's bytes"


def test_a_parent_swapped_for_a_symlink_after_planning_deletes_nothing_outside(
    service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deletion re-checks the real parent: the same file, now outside, stays."""
    svc = service(cleanup={"temp_max_age_hours": 1, "min_folder_age_seconds": 0})
    sub = folder(svc.ctx.roots.batch_dir / "b")
    partial = put(sub / f"{cleanup.TEMP_PREFIX}x", DAY)
    outside = tmp_path / "elsewhere"
    outside.mkdir()

    def swap() -> None:
        sub.rename(outside / "b")
        sub.symlink_to(outside / "b", target_is_directory=True)

    _race_before_first_action(monkeypatch, swap)
    actions = {a.path: a for a in run_cleanup(svc.ctx)}

    assert actions[str(partial)].action == "skip"
    assert "no longer inside" in actions[str(partial)].reason
    assert (outside / "b" / partial.name).is_file()
    assert sub.is_symlink()
