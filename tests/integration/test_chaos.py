"""Chaos: SIGKILL the real daemon at seeded moments in every stage, restart, lose nothing.

The daemon runs as `media-pipeline run` (a subprocess) with two real Syncthing
instances. Input arrives in waves; for each planned kill the test restarts the daemon,
watches the database and the disk, and sends SIGKILL the moment the planned condition
is seen: so many files decided (ingest), moved into a batch folder (batching), moved
into the Syncthing folder (hand-over) or into the library (sorting), or a move of that
stage caught half-way (its journal entry still PENDING). After the last kill the daemon
runs to the end, and the test checks:

- the multiset of SHA-256 of the files under the managed folders equals the input's;
- every row's `current_path` exists; no row is left non-terminal; every batch SORTED;
- the move journal holds no PENDING entry;
- every sorted file is on the remote device too.

Sizes: CHAOS_FILES (input files, default 48), CHAOS_KILLS (default 16), CHAOS_SEED.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from syncthing_env import SyncthingPair

from tests.conftest import base_config
from tests.pipeline.mediafixtures import make_jpeg

ROOT = Path(__file__).resolve().parents[2]
GB = 1024**3
FILES = int(os.environ.get("CHAOS_FILES", "48"))
KILLS = int(os.environ.get("CHAOS_KILLS", "16"))
SEED = int(os.environ.get("CHAOS_SEED", "20261130"))
PHASES = ("ingest", "batching", "handover", "sorting")
ROUND_TIMEOUT = 90.0
FINAL_TIMEOUT = 180.0
TERMINAL = ("SORTED", "DUPLICATE", "SKIPPED")
# What the pipeline writes beside the files in a batch folder. Anything else counts,
# the temp file of a manifest write a kill cut short included (the batch is rebuilt).
METADATA = ("manifest.json", "SHA256SUMS")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Kill:
    phase: str
    after: int  # this many more completed steps of the phase, or
    mid_move: bool  # ...a move of the phase seen half-done, whichever comes first


def plan(rng: random.Random) -> list[Kill]:
    """At least KILLS kills, spread evenly over the phases, in a seeded order."""
    phases = [PHASES[i % len(PHASES)] for i in range(max(KILLS, len(PHASES)))]
    rng.shuffle(phases)
    return [
        Kill(p, rng.randint(1, 3), p != "ingest" and rng.random() < 0.5) for p in phases
    ]


def make_input(staging: Path, rng: random.Random) -> list[list[Path]]:
    """Photos (some exact copies, one undecodable), a note and an empty file, in waves."""
    files: list[Path] = []
    for n in range(FILES):
        folder = staging / f"w{n % KILLS:02d}" / rng.choice(["dcim", "phone", "cam"])
        name = f"IMG_{n:04d}.jpg"
        if n > 4 and rng.random() < 0.12:  # an exact copy of an earlier photo
            twin = rng.choice(files)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(twin.read_bytes())
        else:
            when = datetime(2023, 1, 1) + timedelta(hours=rng.randrange(24 * 365))
            make_jpeg(folder / name, when, seed=SEED + n, size=(120, 90))
        files.append(folder / name)
    broken = files[1]
    broken.write_bytes(broken.read_bytes()[:400])  # EXIF kept, image cut off
    (staging / "w00" / "notes.txt").write_text("not a photo\n")
    (staging / f"w{1 % KILLS:02d}" / "aborted.jpg").write_bytes(b"")
    return [sorted(p for p in w.rglob("*") if p.is_file()) for w in waves(staging)]


def waves(staging: Path) -> list[Path]:
    return sorted(p for p in staging.iterdir() if p.is_dir())


class Watch:
    """Read-only look at the daemon's database while it runs (WAL: never blocks it)."""

    def __init__(self, db: Path, roots: dict[str, Path]):
        self.db = db
        self.roots = {k: str(v) + os.sep for k, v in roots.items()}
        self.con: sqlite3.Connection | None = None

    def _query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.con is None:
            if not self.db.exists():
                return []
            self.con = sqlite3.connect(
                f"file:{self.db}?mode=ro", uri=True, timeout=5, isolation_level=None
            )
        try:
            return self.con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # not migrated yet, or busy: "not yet"

    def progress(self) -> dict[str, int]:
        counts = {"ingest": 0}
        rows = self._query(
            "SELECT count(*) FROM files WHERE status NOT IN ('NEW', 'HASHED')"
        )
        counts["ingest"] = rows[0][0] if rows else 0
        for phase, root in (
            ("batching", "batch_dir"),
            ("handover", "sync_dir"),
            ("sorting", "sorted_dir"),
        ):
            rows = self._query(
                "SELECT count(*) FROM move_journal WHERE state = 'DONE'"
                " AND substr(dst, 1, ?) = ?",
                len(self.roots[root]),
                self.roots[root],
            )
            counts[phase] = rows[0][0] if rows else 0
        return counts

    def pending_in(self, phase: str) -> bool:
        root = {"batching": "batch_dir", "handover": "sync_dir"}.get(
            phase, "sorted_dir"
        )
        rows = self._query(
            "SELECT 1 FROM move_journal WHERE state = 'PENDING'"
            " AND substr(dst, 1, ?) = ? LIMIT 1",
            len(self.roots[root]),
            self.roots[root],
        )
        return bool(rows)

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None


class Daemon:
    """`media-pipeline run` as a subprocess; its output appended to a log file."""

    def __init__(self, config: Path, log: Path):
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def managed_files(tmp_path: Path, sync_dir: Path) -> list[Path]:
    found = []
    for folder in ("inbox", "duplicates", "batch", "sorted"):
        found += [p for p in (tmp_path / folder).rglob("*") if p.is_file()]
    for path in sync_dir.rglob("*"):
        if path.is_file() and not path.name.startswith((".st", ".syncthing")):
            found.append(path)
    batch_roots = {tmp_path / "batch", sync_dir}
    # A batch's own manifest sits at the top of its folder; a user's file of that name
    # would have been renamed there (manifest_1.json) and counts anywhere else.
    return [
        p for p in found if not (p.name in METADATA and p.parent.parent in batch_roots)
    ]


def settled(watch: Watch, expected_rows: int) -> bool:
    rows = watch._query("SELECT status, count(*) FROM files GROUP BY status")
    by_status = dict(rows)
    if sum(by_status.values()) != expected_rows:
        return False
    if set(by_status) - set(TERMINAL):
        return False
    batches = watch._query("SELECT count(*) FROM batches WHERE status != 'SORTED'")
    pending = watch._query("SELECT count(*) FROM move_journal WHERE state='PENDING'")
    return bool(batches and pending) and batches[0][0] == 0 and pending[0][0] == 0


def test_sigkill_at_seeded_moments_loses_nothing(
    tmp_path: Path, syncthing_pair: SyncthingPair
) -> None:
    rng = random.Random(SEED)
    staging = tmp_path / "staging"
    input_waves = make_input(staging, rng)
    expected = Counter(sha(p) for wave in input_waves for p in wave)
    expected_rows = sum(len(w) for w in input_waves)
    kills = plan(rng)

    raw = base_config(
        tmp_path,
        paths={"sync_dir": str(syncthing_pair.local_dir)},
        watcher={"enabled": True, "settle_seconds": 0.2},
        intake={"media_only": True},
        # A handful of files per batch, and a partial batch half a second after
        # its oldest file: every wave goes through every stage.
        batch={"auto_create": True, "max_age_seconds": 0.5, "max_size_gb": 40e3 / GB},
        sort={"auto": True},
        syncthing={
            "enabled": True,
            "url": syncthing_pair.url,
            "api_key": syncthing_pair.api_key,
            "folder_id": syncthing_pair.folder_id,
            "poll_interval_seconds": 0.5,
            "auto_start": True,
        },
        logging={"level": "DEBUG"},
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    roots = {
        "batch_dir": tmp_path / "batch",
        "sync_dir": syncthing_pair.local_dir,
        "sorted_dir": tmp_path / "sorted",
    }
    watch = Watch(tmp_path / "db.sqlite", roots)
    daemon = Daemon(config, tmp_path / "daemon.out")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    log: list[str] = []
    hit: list[str] = []
    started = time.monotonic()
    try:
        for n, kill in enumerate(kills):
            if n < len(input_waves):
                # An atomic drop, as a phone's sync or `mv` makes it.
                os.rename(waves(staging)[0], inbox / f"wave{n:02d}")
            base = watch.progress()
            daemon.start()
            deadline = time.monotonic() + ROUND_TIMEOUT
            why = ""
            while not why:
                now = watch.progress()
                if now[kill.phase] >= base[kill.phase] + kill.after:
                    why = f"{kill.phase} +{now[kill.phase] - base[kill.phase]}"
                elif kill.mid_move and watch.pending_in(kill.phase):
                    why = f"{kill.phase} mid-move"
                elif not daemon.alive():
                    raise AssertionError(f"daemon died by itself:\n{daemon.tail()}")
                elif time.monotonic() > deadline:
                    raise AssertionError(
                        f"kill {n} ({kill}) never saw its condition: {now} from "
                        f"{base}\n{daemon.tail()}"
                    )
                else:
                    time.sleep(0.002)
            daemon.kill()
            hit.append(kill.phase)
            log.append(f"kill {n:2d} at {time.monotonic() - started:6.1f} s: {why}")
        assert len(hit) >= min(15, KILLS) and set(hit) == set(PHASES)

        daemon.start()
        deadline = time.monotonic() + FINAL_TIMEOUT
        while not settled(watch, expected_rows):
            assert daemon.alive(), daemon.tail()
            if time.monotonic() > deadline:
                rows = watch._query("SELECT status, count(*) FROM files GROUP BY 1")
                batches = watch._query(
                    "SELECT status, count(*) FROM batches GROUP BY 1"
                )
                raise AssertionError(
                    f"not settled: files {rows}, batches {batches}\n{daemon.tail()}"
                )
            time.sleep(0.1)
        assert daemon.stop() == 0
    finally:
        watch.close()
        daemon.kill()
        print("\n".join(log))
        print(f"chaos: {len(log)} kills, seed {SEED}, {FILES} files")

    found = managed_files(tmp_path, syncthing_pair.local_dir)
    by_hash: dict[str, list[str]] = {}
    for path in found:
        by_hash.setdefault(sha(path), []).append(str(path.relative_to(tmp_path)))
    extra = {h: by_hash[h] for h in by_hash if len(by_hash[h]) > expected.get(h, 0)}
    lost = sorted(set(expected) - set(by_hash))
    assert not extra and not lost, f"extra or doubled: {extra}; lost: {lost}"
    assert Counter(sha(p) for p in found) == expected
    con = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        rows = con.execute(
            "SELECT id, status, current_path, sha256 FROM files"
        ).fetchall()
        assert not con.execute(
            "SELECT id FROM move_journal WHERE state = 'PENDING'"
        ).fetchall()
        assert {r[0] for r in con.execute("SELECT status FROM batches")} == {"SORTED"}
    finally:
        con.close()
    assert len(rows) == expected_rows
    assert [r for r in rows if r[1] not in TERMINAL] == []
    assert [r for r in rows if not Path(r[2]).is_file()] == []
    on_remote = {sha(p) for p in syncthing_pair.remote_dir.rglob("*.jpg")}
    assert {r[3] for r in rows if r[1] == "SORTED"} <= on_remote
