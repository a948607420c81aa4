"""Cleanup: empty folders, sorted batch folders, stale temp files and partial copies,
rotated logs, finished job rows and an occasional database optimize.

`run_cleanup` first plans every action from one look at the disk and the database,
then (unless `dry_run`) carries the plan out, so a dry run lists exactly what a real
run would do. It never deletes a media or sidecar file (our own partial copies,
`.mp-partial-*`, excepted: their content is safe elsewhere), never follows a symlink,
never leaves the configured folders and never touches what Syncthing owns
(`.stfolder`, `.stignore`, `.stversions`, `.syncthing.*.tmp`). A per-path error
becomes a `skip` action and the run goes on.
"""

from __future__ import annotations

import fnmatch
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from loguru import logger

from pipeline.context import Context
from pipeline.fsops import TEMP_PREFIX
from pipeline.media import MEDIA_EXTS, SIDECAR_EXTS
from pipeline.models import (
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    MoveJournal,
    MoveState,
    tuples,
)

ACTIONS = (
    "remove_empty_dir",
    "remove_batch_folder",
    "remove_temp",
    "remove_partial",
    "remove_log",
    "delete_jobs",
    "optimize_db",
    "skip",
)
BATCH_FILES = frozenset({"manifest.json", "SHA256SUMS"})
CURRENT_LOG = "media-pipeline.log"  # daemon/logs.py LOG_NAME; pipeline cannot import it
ROTATED_LOG = "media-pipeline.*.log*"
SYNCTHING_NAMES = frozenset({".stfolder", ".stignore", ".stversions"})
USER_EXTS = MEDIA_EXTS | SIDECAR_EXTS
OPTIMIZE_EVERY_SECONDS = 24 * 3600
# Roots whose empty sub-folders go; roots searched for partial copies; the roots a
# misconfigured temp_dir must not overlap. temp_dir is not among the first: the
# daemon makes no folders there, and deletes only its own files (TEMP_PREFIX).
EMPTY_ROOTS = ("inbox", "batch_dir", "sync_dir")
WALKED_ROOTS = (
    "inbox",
    "duplicates_dir",
    "batch_dir",
    "sync_dir",
    "sorted_dir",
    "temp_dir",
)
NOT_TEMP_ROOTS = (
    "inbox",
    "duplicates_dir",
    "batch_dir",
    "sync_dir",
    "sorted_dir",
    "log_dir",
)


@dataclass(frozen=True)
class Action:
    """One thing cleanup did (or, in a dry run, would do); a `skip` says why not."""

    action: str
    path: str
    reason: str


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
        steps = _Planner(ctx, db_now, wall_now).plan()
        actions = [_carry_out(step, dry_run) for step in steps]
    done = sum(action.action != "skip" for action in actions)
    logger.bind(event="cleanup", status="dry_run" if dry_run else "finished").info(
        "cleanup {}: {} actions, {} skipped",
        "dry run" if dry_run else "run",
        done,
        len(actions) - done,
    )
    return actions


def syncthing_owned(name: str) -> bool:
    """True for the names Syncthing keeps in its folders; cleanup leaves them alone."""
    if name in SYNCTHING_NAMES:
        return True
    temp = name.startswith((".syncthing.", "~syncthing~"))
    return temp and name.endswith(".tmp")


def is_user_file(name: str) -> bool:
    """True for a media or sidecar extension: cleanup never deletes such a file."""
    return os.path.splitext(name)[1].lower() in USER_EXTS


# execution -------------------------------------------------------------------------


class Changed(Exception):
    """A path is no longer what the plan saw; it is left alone."""


@dataclass
class _Step:
    action: Action
    apply: Callable[[], None] | None = None


def _clocks(ctx: Context, now: datetime | None) -> tuple[datetime, float]:
    if now is None:
        return ctx.clock(), time.time()
    if now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    return now, now.replace(tzinfo=UTC).timestamp()


def _carry_out(step: _Step, dry_run: bool) -> Action:
    action = step.action
    if not dry_run and step.apply is not None:
        try:
            step.apply()
        except FileNotFoundError:
            action = Action("skip", action.path, "vanished before it could be removed")
        except Exception as exc:  # one path failing must not stop the run
            action = Action("skip", action.path, f"{action.action}: {_reason(exc)}")
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


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _inside(path: Path, root_real: Path) -> None:
    """Raise Changed unless `path`'s folder still resolves inside `root_real`."""
    parent = Path(os.path.realpath(path.parent))
    if parent != root_real and not parent.is_relative_to(root_real):
        raise Changed(f"no longer inside {root_real}")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    # The inode alone is not enough: ext4 hands a freed inode to the next new file,
    # so a file deleted and re-created at the same name can carry the old number.
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _unlink(path: Path, seen: os.stat_result, root_real: Path) -> None:
    _inside(path, root_real)
    now = os.lstat(path)
    if not stat.S_ISREG(now.st_mode) or _identity(now) != _identity(seen):
        raise Changed("replaced since it was checked; left in place")
    os.unlink(path)


def _rmdir(path: Path, ino: int, root_real: Path) -> None:
    _inside(path, root_real)
    now = os.lstat(path)
    if not stat.S_ISDIR(now.st_mode) or now.st_ino != ino:
        raise Changed("replaced since it was checked; left in place")
    os.rmdir(path)  # fails, leaving it, when something arrived in the meantime


def batch_contents(folder: Path) -> tuple[list[Path], list[Path], list[str]]:
    """(manifest files, folders bottom-up ending with `folder`, anything else)."""
    files: list[Path] = []
    dirs: list[Path] = []
    extra: list[str] = []

    def visit(path: Path, top: bool) -> None:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not syncthing_owned(entry.name):
                visit(Path(entry.path), False)
            elif (
                top
                and entry.name in BATCH_FILES
                and entry.is_file(follow_symlinks=False)
            ):
                files.append(Path(entry.path))
            else:
                extra.append(os.path.relpath(entry.path, folder))
        dirs.append(path)

    visit(folder, True)
    return files, dirs, extra


def _remove_batch_folder(folder: Path, root_real: Path) -> None:
    _inside(folder, root_real)
    if not stat.S_ISDIR(os.lstat(folder).st_mode):
        raise Changed("no longer a folder; left in place")
    files, dirs, extra = batch_contents(folder)
    if extra:
        raise Changed(f"now holds {extra[0]}; left in place")
    for path in files:
        os.unlink(path)
    for path in dirs:
        os.rmdir(path)


# planning --------------------------------------------------------------------------


@dataclass
class _Dir:
    path: Path
    ino: int
    mtime: float
    subdirs: list[_Dir] = field(default_factory=list)
    kept: bool = False  # holds something that stays: a file, a link, Syncthing's


@dataclass
class _Root:
    names: list[str]
    path: Path
    real: Path
    st: os.stat_result
    temp_rule: bool = False
    node: _Dir | None = None

    @property
    def empty_rule(self) -> bool:
        return any(name in EMPTY_ROOTS for name in self.names)


@dataclass
class _Partial:
    root: _Root
    node: _Dir
    path: Path
    st: os.stat_result


class _Planner:
    """Looks at the disk and the database once and lists the steps, in run order."""

    def __init__(self, ctx: Context, db_now: datetime, wall_now: float):
        self.ctx = ctx
        self.cfg = ctx.settings.cleanup
        self.db_now = db_now
        self.wall_now = wall_now
        self.steps: list[_Step] = []
        self.claimed: set[tuple[int, int]] = set()  # batch folders planned to go
        self.partials: list[_Partial] = []
        self.roots: list[_Root] = []
        self.root_ids: set[tuple[int, int]] = set()
        self.temp_age = self.cfg.temp_max_age_hours * 3600
        self.db_files = self._db_files()

    def plan(self) -> list[_Step]:
        for phase in (
            self._find_roots,
            self._plan_batches,
            self._walk_roots,
            self._plan_partials,
            self._plan_empty_dirs,
            self._plan_logs,
            self._plan_jobs,
            self._plan_optimize,
        ):
            try:
                phase()
            except Exception as exc:  # a broken rule must not stop the others
                logger.bind(event="cleanup", status="failed").exception(
                    "cleanup phase {} failed", phase.__name__
                )
                self._skip(phase.__name__.removeprefix("_"), f"failed: {_reason(exc)}")
        return self.steps

    # helpers -----------------------------------------------------------------------

    def _add(
        self, action: str, path: Path | str, reason: str, apply: Callable[[], None]
    ) -> None:
        self.steps.append(_Step(Action(action, str(path), reason), apply))

    def _skip(self, path: Path | str, reason: str) -> None:
        self.steps.append(_Step(Action("skip", str(path), reason)))

    def _old(self, mtime: float, seconds: float) -> bool:
        return mtime <= self.wall_now - seconds

    def _root_path(self, name: str) -> Path:
        return Path(getattr(self.ctx.roots, name))

    def _db_files(self) -> set[str]:
        db = os.path.realpath(self.ctx.settings.database.path)
        return {db + suffix for suffix in ("", "-wal", "-shm", "-journal")}

    # roots -------------------------------------------------------------------------

    def _find_roots(self) -> None:
        names = list(dict.fromkeys((*WALKED_ROOTS, "log_dir")))
        by_id: dict[tuple[int, int], _Root] = {}
        for name in names:
            path = self._root_path(name)
            try:
                st = os.stat(path)  # the configured folder itself may be a link
            except OSError as exc:
                self._skip(path, f"paths.{name} cannot be read: {_reason(exc)}")
                continue
            if not stat.S_ISDIR(st.st_mode):
                self._skip(path, f"paths.{name} is not a folder")
                continue
            key = (st.st_dev, st.st_ino)
            self.root_ids.add(key)
            if key in by_id:
                by_id[key].names.append(name)
            elif name in WALKED_ROOTS:
                by_id[key] = _Root([name], path, Path(os.path.realpath(path)), st)
        self.roots = list(by_id.values())
        temp = next((r for r in self.roots if "temp_dir" in r.names), None)
        if temp is not None:
            temp.temp_rule = self._temp_allowed(temp)

    def _temp_allowed(self, temp: _Root) -> bool:
        """False (reported) when temp_dir overlaps a media or log folder."""
        for name in NOT_TEMP_ROOTS:
            other = Path(os.path.realpath(self._root_path(name)))
            if (
                temp.real == other
                or temp.real.is_relative_to(other)
                or other.is_relative_to(temp.real)
            ):
                self._skip(
                    temp.path,
                    f"paths.temp_dir overlaps paths.{name}; temp files are not "
                    "cleaned there",
                )
                return False
        return True

    # batch folders -----------------------------------------------------------------

    def _plan_batches(self) -> None:
        cutoff = self.db_now - timedelta(days=self.cfg.batch_retention_days)
        rows = (
            Batch.select().where(Batch.status == BatchStatus.SORTED).order_by(Batch.id)
        )
        for batch in rows:
            when = batch.sorted_at or batch.updated_at
            if when is None or when > cutoff:
                continue
            for folder, root_real in self._batch_folders(batch):
                self._plan_batch_folder(batch, folder, root_real)

    def _batch_folders(self, batch: Batch) -> Iterator[tuple[Path, Path]]:
        """Existing real folders of `batch` directly inside sync_dir or batch_dir."""
        names = [batch.name]
        if batch.location:
            names.append(Path(batch.location).name)
        seen: set[tuple[int, int]] = set()
        for root_name in ("sync_dir", "batch_dir"):
            root = self._root_path(root_name)
            root_real = Path(os.path.realpath(root))
            for name in dict.fromkeys(names):
                if not name or name in (".", "..") or "/" in name:
                    continue
                folder = root / name
                try:
                    st = os.lstat(folder)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if stat.S_ISDIR(st.st_mode) and key not in seen:
                    seen.add(key)
                    yield folder, root_real

    def _plan_batch_folder(self, batch: Batch, folder: Path, root_real: Path) -> None:
        try:
            _, _, extra = batch_contents(folder)
            st = os.lstat(folder)
        except OSError as exc:
            self._skip(folder, f"cannot read batch folder: {_reason(exc)}")
            return
        if extra:
            shown = ", ".join(extra[:3])
            self._skip(
                folder,
                f"batch {batch.name} is sorted but its folder still holds "
                f"{len(extra)} other item(s) ({shown}); left in place",
            )
            return
        self.claimed.add((st.st_dev, st.st_ino))
        days = self.cfg.batch_retention_days
        self._add(
            "remove_batch_folder",
            folder,
            f"batch {batch.name} sorted more than {days:g} days ago; "
            "only its manifest was left",
            lambda: _remove_batch_folder(folder, root_real),
        )

    # the walk ----------------------------------------------------------------------

    def _walk_roots(self) -> None:
        for root in self.roots:
            root.node = self._scan(root, root.path, root.st)

    def _scan(self, root: _Root, path: Path, st: os.stat_result) -> _Dir:
        node = _Dir(path, st.st_ino, st.st_mtime)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            node.kept = True
            self._skip(path, f"cannot read folder: {_reason(exc)}")
            return node
        for entry in entries:
            try:
                goes = self._scan_entry(root, node, entry)
            except FileNotFoundError:
                goes = False
            except OSError as exc:
                goes = False
                self._skip(entry.path, f"cannot inspect: {_reason(exc)}")
            node.kept = node.kept or not goes
        return node

    def _scan_entry(self, root: _Root, node: _Dir, entry: os.DirEntry[str]) -> bool:
        """Whether `entry` may go (a folder walked into is decided later)."""
        if syncthing_owned(entry.name):
            return False  # never removed, never descended into
        st = entry.stat(follow_symlinks=False)
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if key in self.claimed:
                return True
            if key in self.root_ids:
                return False  # another configured folder: walked on its own
            node.subdirs.append(self._scan(root, Path(entry.path), st))
            return True
        if stat.S_ISREG(st.st_mode):
            return self._claim_file(root, node, Path(entry.path), st)
        return False  # symlinks, FIFOs, sockets, devices stay

    def _claim_file(
        self, root: _Root, node: _Dir, path: Path, st: os.stat_result
    ) -> bool:
        # Only names the daemon gives its own files are ever candidates: whatever else
        # is in temp_dir (a misconfigured /tmp, someone's files) is not ours to delete.
        if not path.name.startswith(TEMP_PREFIX):
            return False
        if not self._old(st.st_mtime, self.temp_age):
            return False
        if root.temp_rule:
            return self._claim_temp(root, path, st)
        # Decided after the walk, against the journal read then.
        self.partials.append(_Partial(root, node, path, st))
        return True

    def _claim_temp(self, root: _Root, path: Path, st: os.stat_result) -> bool:
        if os.path.realpath(path) in self.db_files:
            return False
        hours = self.cfg.temp_max_age_hours
        self._add(
            "remove_temp",
            path,
            f"temp file older than {hours:g} h",
            lambda: _unlink(path, st, root.real),
        )
        return True

    # partial copies ----------------------------------------------------------------

    def _journal_holds(self) -> dict[str, str]:
        """Partial names held by a PENDING (in flight) or FAILED (maybe sole copy) move.

        Read after the walk: a move journals its temp name before creating the file,
        so every partial the walk saw that is still in use shows up here.
        """
        held: dict[str, str] = {}
        rows = MoveJournal.select(MoveJournal.tmp, MoveJournal.state).where(
            MoveJournal.tmp.is_null(False),
            MoveJournal.state.in_((MoveState.PENDING, MoveState.FAILED)),
        )
        for tmp, state in tuples(rows):
            name = Path(tmp).name
            if held.get(name) != MoveState.PENDING:
                held[name] = state
        return held

    def _plan_partials(self) -> None:
        if not self.partials:
            return
        held = self._journal_holds()
        hours = self.cfg.temp_max_age_hours
        for item in self.partials:
            state = held.get(item.path.name)
            if state is not None:
                item.node.kept = True
            if state == MoveState.FAILED:
                self._skip(
                    item.path,
                    "partial copy of a failed move may be the only copy; left in place",
                )
            if state is not None:
                continue
            self._add(
                "remove_partial",
                item.path,
                f"abandoned partial copy older than {hours:g} h",
                partial(_unlink, item.path, item.st, item.root.real),
            )

    # empty folders -----------------------------------------------------------------

    def _plan_empty_dirs(self) -> None:
        for root in self.roots:
            if root.empty_rule and root.node is not None:
                self._plan_empty(root, root.node, top=True)

    def _plan_empty(self, root: _Root, node: _Dir, top: bool) -> bool:
        """Plan `node`'s empty folders bottom-up; True when `node` itself goes."""
        children = [self._plan_empty(root, child, False) for child in node.subdirs]
        min_age = self.cfg.min_folder_age_seconds
        if top or node.kept or not all(children) or not self._old(node.mtime, min_age):
            return False
        self._add(
            "remove_empty_dir",
            node.path,
            f"empty folder unchanged for at least {min_age:g} s",
            lambda: _rmdir(node.path, node.ino, root.real),
        )
        return True

    # logs, jobs, database ----------------------------------------------------------

    def _plan_logs(self) -> None:
        log_dir = self._root_path("log_dir")
        if not log_dir.is_dir():
            return
        root_real = Path(os.path.realpath(log_dir))
        days = self.cfg.log_retention_days
        with os.scandir(log_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            name = entry.name
            if (
                name == CURRENT_LOG
                or not fnmatch.fnmatchcase(name, ROTATED_LOG)
                or is_user_file(name)
            ):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and self._old(st.st_mtime, days * 86400):
                path = Path(entry.path)
                self._add(
                    "remove_log",
                    path,
                    f"rotated log older than {days:g} days",
                    partial(_unlink, path, st, root_real),
                )

    def _plan_jobs(self) -> None:
        days = self.cfg.job_retention_days
        cutoff = self.db_now - timedelta(days=days)
        finished = Job.status.in_((JobStatus.DONE, JobStatus.FAILED))
        when = (Job.finished_at < cutoff) | (
            Job.finished_at.is_null() & (Job.created_at < cutoff)
        )
        count = Job.select().where(finished, when).count()
        if not count:
            return

        def delete() -> None:
            self.ctx.writer.call(lambda: Job.delete().where(finished, when).execute())

        self._add(
            "delete_jobs",
            "jobs",
            f"{count} finished job(s) older than {days:g} days",
            delete,
        )

    def _plan_optimize(self) -> None:
        db = self.ctx.writer.db
        key = str(db.database)
        if self.wall_now - self.ctx.shared.last_optimize < OPTIMIZE_EVERY_SECONDS:
            return
        incremental = db.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2
        reason = "PRAGMA optimize" + (
            "; PRAGMA incremental_vacuum" if incremental else ""
        )
        wall_now = self.wall_now

        def optimize() -> None:
            def work() -> None:
                db.execute_sql("PRAGMA optimize")
                if incremental:
                    db.execute_sql("PRAGMA incremental_vacuum").fetchall()

            self.ctx.writer.call(work)
            self.ctx.shared.last_optimize = wall_now

        self._add("optimize_db", key, reason, optimize)
