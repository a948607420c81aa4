"""Adoption in a real daemon process: SIGKILL mid-adoption, resume at start, the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.conftest import wait_until
from tests.integration.test_daemon import cli, running, write
from tests.pipeline.test_adopt import photo, snapshot

TOTAL = 600


def adopted(db: Path) -> int:
    """Adopted rows committed so far, read from the daemon's database (read-only)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT count(*) FROM files WHERE source = 'adopted'")
        return int(row.fetchone()[0])
    except sqlite3.OperationalError:  # the schema is still being created
        return 0
    finally:
        con.close()


def root_state(db: Path) -> str | None:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = con.execute("SELECT state FROM library_roots").fetchone()
    finally:
        con.close()
    return row[0] if row else None


def test_adoption_killed_then_resumed_records_each_file_once(tmp_path: Path) -> None:
    # One worker and camera-sized frames keep the adoption busy long enough to be
    # caught in the middle: the kill waits for that, it does not guess with a sleep.
    config = write(tmp_path, system={"max_parallel_fs_ops": 1})
    library = tmp_path / "sorted"
    for n in range(TOTAL):
        size = (1024, 768) if n % 3 == 0 else (96, 72)
        photo(library / f"{2000 + n % 20}" / f"img_{n:04d}.jpg", n, size=size)
    before = snapshot(library)
    db = tmp_path / "db.sqlite"

    with running(config) as (proc, _):
        started = cli("adopt", "--no-wait", "-c", str(config))
        assert started.returncode == 0, started.stderr
        wait_until(lambda: 0 < adopted(db) < TOTAL, timeout=60, interval=0.005)
        proc.kill()
        proc.wait(10)
    landed = adopted(db)
    assert 0 < landed < TOTAL, f"the kill did not land mid-adoption ({landed})"
    assert root_state(db) == "ADOPTING"

    with running(config) as (proc, url):

        def adopt_job() -> dict | None:
            job = httpx.get(f"{url}/api/library/status").json()["data"]["adopt"]
            return job if job and job["status"] in ("DONE", "FAILED") else None

        job = wait_until(adopt_job, timeout=120, interval=0.1)
        assert job["status"] == "DONE", job
        assert root_state(db) == "ADOPTED"
        (report,) = job["result"]["roots"]
        assert report["unchanged"] == landed  # what was recorded is not hashed again
        assert report["recorded"] == TOTAL - landed

        verified = cli("verify", "--hash", "-c", str(config))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"{TOTAL} files checked (SHA-256): 0 missing, 0 corrupt" in (
            verified.stdout
        )

        gone = library / "2001" / "img_0001.jpg"
        gone.unlink()
        found = cli("verify", "-c", str(config))
        assert found.returncode == 1
        assert "MISSING" in found.stdout and str(gone) in found.stdout

        outside = tmp_path / "old_phone"
        photo(outside / "a.jpg", 100001)
        photo(outside / "b.jpg", 100000)
        again = cli("adopt", str(outside), "-c", str(config))
        assert again.returncode == 0, again.stderr
        assert f"adopted {outside} (reference)" in again.stdout

        refused = cli("adopt", str(tmp_path / "inbox"), "-c", str(config))
        assert refused.returncode == 1 and "paths.inbox" in refused.stderr

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute(
            "SELECT current_path FROM files WHERE current_path LIKE ?",
            (f"{library}/%",),
        ).fetchall()
    finally:
        con.close()
    assert len(rows) == TOTAL == len({r[0] for r in rows})
    del before["2001/img_0001.jpg"]
    assert snapshot(library) == before  # nothing moved, renamed or written
