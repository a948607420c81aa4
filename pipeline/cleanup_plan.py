"""Planning a cleanup: one look at the disk and the database, the steps in run order."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from loguru import logger

from pipeline.cleanup_steps import (
    CURRENT_LOG,
    NOT_TEMP_ROOTS,
    OPTIMIZE_EVERY_SECONDS,
    ROTATED_LOG,
    WALKED_ROOTS,
    Action,
    Partial,
    Root,
    SeenDir,
    Step,
    batch_contents,
    database_files,
    is_user_file,
    journal_holds,
    reason_of,
    remove_batch_folder,
    rmdir_checked,
    syncthing_owned,
    unlink_checked,
)
from pipeline.context import Context
from pipeline.fsops import TEMP_PREFIX
from pipeline.models import (
    Batch,
    BatchStatus,
    Job,
    JobStatus,
    MoveState,
)


class Planner:
    """Looks at the disk and the database once and lists the steps, in run order."""

    def __init__(self, ctx: Context, db_now: datetime, wall_now: float):
        self.ctx = ctx
        self.cfg = ctx.settings.cleanup
        self.db_now = db_now
        self.wall_now = wall_now
        self.steps: list[Step] = []
        self.claimed: set[tuple[int, int]] = set()  # batch folders planned to go
        self.partials: list[Partial] = []
        self.roots: list[Root] = []
        self.root_ids: set[tuple[int, int]] = set()
        self.temp_age = self.cfg.temp_max_age_hours * 3600
        self.db_files = database_files(ctx.settings.database.path)

    def plan(self) -> list[Step]:
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
                self._skip(
                    phase.__name__.removeprefix("_"), f"failed: {reason_of(exc)}"
                )
        return self.steps

    # helpers -----------------------------------------------------------------------

    def _add(
        self, action: str, path: Path | str, reason: str, apply: Callable[[], None]
    ) -> None:
        self.steps.append(Step(Action(action, str(path), reason), apply))

    def _skip(self, path: Path | str, reason: str) -> None:
        self.steps.append(Step(Action("skip", str(path), reason)))

    def _old(self, mtime: float, seconds: float) -> bool:
        return mtime <= self.wall_now - seconds

    def _root_path(self, name: str) -> Path:
        return Path(getattr(self.ctx.roots, name))

    # roots -------------------------------------------------------------------------

    def _find_roots(self) -> None:
        names = list(dict.fromkeys((*WALKED_ROOTS, "log_dir")))
        by_id: dict[tuple[int, int], Root] = {}
        for name in names:
            path = self._root_path(name)
            try:
                st = os.stat(path)  # the configured folder itself may be a link
            except OSError as exc:
                self._skip(path, f"paths.{name} cannot be read: {reason_of(exc)}")
                continue
            if not stat.S_ISDIR(st.st_mode):
                self._skip(path, f"paths.{name} is not a folder")
                continue
            key = (st.st_dev, st.st_ino)
            self.root_ids.add(key)
            if key in by_id:
                by_id[key].names.append(name)
            elif name in WALKED_ROOTS:
                by_id[key] = Root([name], path, Path(os.path.realpath(path)), st)
        self.roots = list(by_id.values())
        temp = next((r for r in self.roots if "temp_dir" in r.names), None)
        if temp is not None:
            temp.temp_rule = self._temp_allowed(temp)

    def _temp_allowed(self, temp: Root) -> bool:
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
            self._skip(folder, f"cannot read batch folder: {reason_of(exc)}")
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
            lambda: remove_batch_folder(folder, root_real),
        )

    # the walk ----------------------------------------------------------------------

    def _walk_roots(self) -> None:
        for root in self.roots:
            root.node = self._scan(root, root.path, root.st)

    def _scan(self, root: Root, path: Path, st: os.stat_result) -> SeenDir:
        node = SeenDir(path, st.st_ino, st.st_mtime)
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            node.kept = True
            self._skip(path, f"cannot read folder: {reason_of(exc)}")
            return node
        for entry in entries:
            try:
                goes = self._scan_entry(root, node, entry)
            except FileNotFoundError:
                goes = False
            except OSError as exc:
                goes = False
                self._skip(entry.path, f"cannot inspect: {reason_of(exc)}")
            node.kept = node.kept or not goes
        return node

    def _scan_entry(self, root: Root, node: SeenDir, entry: os.DirEntry[str]) -> bool:
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
        self, root: Root, node: SeenDir, path: Path, st: os.stat_result
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
        self.partials.append(Partial(root, node, path, st))
        return True

    def _claim_temp(self, root: Root, path: Path, st: os.stat_result) -> bool:
        if os.path.realpath(path) in self.db_files:
            return False
        hours = self.cfg.temp_max_age_hours
        self._add(
            "remove_temp",
            path,
            f"temp file older than {hours:g} h",
            lambda: unlink_checked(path, st, root.real),
        )
        return True

    # partial copies ----------------------------------------------------------------

    def _plan_partials(self) -> None:
        if not self.partials:
            return
        held = journal_holds()
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
                partial(unlink_checked, item.path, item.st, item.root.real),
            )

    # empty folders -----------------------------------------------------------------

    def _plan_empty_dirs(self) -> None:
        for root in self.roots:
            if root.empty_rule and root.node is not None:
                self._plan_empty(root, root.node, top=True)

    def _plan_empty(self, root: Root, node: SeenDir, top: bool) -> bool:
        """Plan `node`'s empty folders bottom-up; True when `node` itself goes."""
        children = [self._plan_empty(root, child, False) for child in node.subdirs]
        min_age = self.cfg.min_folder_age_seconds
        if top or node.kept or not all(children) or not self._old(node.mtime, min_age):
            return False
        self._add(
            "remove_empty_dir",
            node.path,
            f"empty folder unchanged for at least {min_age:g} s",
            lambda: rmdir_checked(node.path, node.ino, root.real),
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
                    partial(unlink_checked, path, st, root_real),
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
