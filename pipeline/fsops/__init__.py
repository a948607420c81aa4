"""Crash-safe, journaled, never-overwriting file moves: the only way a stage moves a file.

A move is written to `move_journal` (committed) before anything on disk changes and is
marked DONE, together with the file's new row values, after. Same filesystem: hard
link to the destination (fails instead of overwriting), then unlink the source. Across
filesystems: copy to a temp name beside the destination, fsync, verify size and
SHA-256, link into place, then unlink the source. `recover()` settles every entry a
crash left PENDING so that the database and the disk agree.

The package, one idea per module: `paths` (names, plain checks, the source's real
folder), `durability` (fsync, syncfs, atomic writes), `journal` (the move_journal
rows), `mover` (the moves) and `recovery` (settling what a crash left PENDING).
Everything is importable from `pipeline.fsops` as before.
"""

from __future__ import annotations

from pipeline.fsops.durability import (
    SYNCFS_FILESYSTEMS,
    SYNCFS_FROM,
    filesystem_type,
    fsync_dir,
    sync_folders,
    write_atomic,
)
from pipeline.fsops.journal import (
    Entry,
    check_transitions,
    close_entry,
    finish_rows,
    hashed_identity,
    insert_entries,
    pending_entries,
    update_entry,
)
from pipeline.fsops.mover import NO_LINK, Checkpoint, Mover, MoveRequest, MoveResult
from pipeline.fsops.paths import (
    CHUNK,
    MTIME_SLACK_NS,
    TEMP_PREFIX,
    Folders,
    MoveError,
    StrPath,
    SwappedPath,
    candidate_names,
    exists,
    open_folder,
    regular_file,
    remove_empty_tree,
    same_file,
    sha256_of,
    split_suffix,
    temp_name,
    unlink_inside,
)
from pipeline.fsops.recovery import recover, settle

__all__ = [
    "CHUNK",
    "Checkpoint",
    "Entry",
    "Folders",
    "MTIME_SLACK_NS",
    "MoveError",
    "MoveRequest",
    "MoveResult",
    "Mover",
    "NO_LINK",
    "SYNCFS_FILESYSTEMS",
    "SYNCFS_FROM",
    "StrPath",
    "SwappedPath",
    "TEMP_PREFIX",
    "candidate_names",
    "check_transitions",
    "close_entry",
    "exists",
    "filesystem_type",
    "finish_rows",
    "fsync_dir",
    "hashed_identity",
    "insert_entries",
    "open_folder",
    "pending_entries",
    "recover",
    "regular_file",
    "remove_empty_tree",
    "same_file",
    "settle",
    "sha256_of",
    "split_suffix",
    "sync_folders",
    "temp_name",
    "unlink_inside",
    "update_entry",
    "write_atomic",
]
