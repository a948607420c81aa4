"""Tests for the inbox watcher, with real watchdog observers on real folders."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath

import pytest
from watchdog.events import DirCreatedEvent, FileCreatedEvent, FileSystemEvent
from watchdog.observers.api import BaseObserver
from watchdog.observers.inotify import InotifyObserver
from watchdog.observers.polling import PollingObserver

from daemon.watcher import (
    DEFAULT_IGNORE,
    InboxWatcher,
    regular_file_stat,
)
from pipeline.intake import is_ignored

SETTLE = 0.3
WAIT = 30.0


def wait_until(cond: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


class Recorder:
    """on_ready callback that remembers each path and its size at announcement."""

    def __init__(self, fail_for: set[str] | None = None) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[Path, int]] = []
        self._fail_for = fail_for or set()

    def __call__(self, path: Path) -> None:
        try:
            size = os.lstat(path).st_size
        except OSError:
            size = -1
        with self._lock:
            self.calls.append((path, size))
        if path.name in self._fail_for:
            raise RuntimeError(f"simulated failure for {path.name}")

    def paths(self) -> list[Path]:
        with self._lock:
            return [p for p, _ in self.calls]

    def count(self, path: Path) -> int:
        return self.paths().count(path)

    def sizes(self, path: Path) -> list[int]:
        with self._lock:
            return [s for p, s in self.calls if p == path]


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def make_watcher(inbox: Path) -> Iterator[Callable[..., InboxWatcher]]:
    created: list[InboxWatcher] = []

    def factory(on_ready: Callable[[Path], None], **kwargs: object) -> InboxWatcher:
        kwargs.setdefault("settle_seconds", SETTLE)
        watcher = InboxWatcher(inbox, on_ready, **kwargs)  # type: ignore[arg-type]
        created.append(watcher)
        return watcher

    yield factory
    for watcher in created:
        watcher.stop()


def no_events_observer() -> BaseObserver:
    """An observer that never reports anything in a test's lifetime."""
    return PollingObserver(timeout=3600)


class Injector:
    """Observer factory whose observer reports only the events a test injects."""

    def __init__(self) -> None:
        self.observer: BaseObserver | None = None

    def __call__(self) -> BaseObserver:
        self.observer = no_events_observer()
        return self.observer

    def emit(self, event: FileSystemEvent) -> None:
        assert self.observer is not None
        next(iter(self.observer.emitters)).queue_event(event)


def raise_enospc() -> BaseObserver:
    raise OSError(errno.ENOSPC, "inotify watch limit reached")


class EmfileObserver(InotifyObserver):
    def start(self) -> None:
        raise OSError(errno.EMFILE, "inotify instance limit reached")


def settled(watcher: InboxWatcher) -> bool:
    return wait_until(lambda: watcher.pending == 0)


# -- pure helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("photo.jpg", False),
        ("album/2024/photo.jpg", False),
        (".DS_Store", True),
        (".syncthing.photo.jpg.tmp", True),
        ("video.mp4.part", True),
        ("VIDEO.MP4.PART", True),
        ("file.crdownload", True),
        ("~$report.docx", True),
        (".hidden/photo.jpg", True),
        ("album/.thumbs/a/photo.jpg", True),
        ("album~/photo.jpg", False),
        ("partial.jpg", False),
    ],
)
def test_is_ignored_matches_every_component(rel: str, expected: bool) -> None:
    assert is_ignored(PurePath(rel), DEFAULT_IGNORE) is expected


def test_is_ignored_with_no_patterns_ignores_nothing() -> None:
    assert not is_ignored(PurePath(".hidden/x.part"), [])


def test_regular_file_stat_only_accepts_regular_files(tmp_path: Path) -> None:
    regular = tmp_path / "a.jpg"
    regular.write_bytes(b"x" * 10)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    link.symlink_to(regular)
    folder = tmp_path / "dir"
    folder.mkdir()

    st = regular_file_stat(regular)
    assert st is not None and st.st_size == 10
    for other in (fifo, link, folder, tmp_path / "missing", Path("/dev/null")):
        assert regular_file_stat(other) is None, other


# -- the watcher --------------------------------------------------------------------


def test_slowly_written_file_is_announced_once_when_complete(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    rec = Recorder()
    # Pauses 40x shorter than the settle time: even on a loaded 2-core machine,
    # where a 0.05 s sleep can stretch several-fold, the file keeps growing
    # before the watcher could call it settled.
    watcher = make_watcher(rec, settle_seconds=2.0)
    watcher.start()
    target = inbox / "slow.mov"
    chunk = os.urandom(4096)
    with target.open("wb") as fh:
        for _ in range(30):  # about 1.5 s in all
            fh.write(chunk)
            fh.flush()
            time.sleep(0.05)
    final = target.stat().st_size

    assert wait_until(lambda: rec.count(target) >= 1)
    assert settled(watcher)
    assert watcher.scan() == 0
    assert rec.sizes(target) == [final]


def test_two_thousand_files_dropped_at_once_are_all_announced_once(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    rec = Recorder()
    watcher = make_watcher(rec)
    watcher.start()
    expected = set()
    for i in range(2000):
        path = inbox / f"img_{i:04d}.jpg"
        path.write_bytes(b"%d" % i)
        expected.add(path)

    assert wait_until(lambda: len(rec.paths()) >= 2000)
    assert settled(watcher)
    assert watcher.scan() == 0
    counts = Counter(rec.paths())
    assert set(counts) == expected
    assert set(counts.values()) == {1}


def test_files_present_before_start_are_announced_by_the_start_scan(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    sub = inbox / "sub"
    files = [inbox / "a.jpg", sub / "b.heic", sub / "deep" / "c.mp4"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())
    rec = Recorder()
    # No events at all: only the start scan can find these.
    watcher = make_watcher(rec, observer_factory=no_events_observer)
    watcher.start()

    assert wait_until(lambda: set(rec.paths()) == set(files))
    assert settled(watcher)
    assert sorted(rec.paths()) == sorted(files)


def test_folders_copied_or_moved_in_are_picked_up(
    tmp_path: Path, inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    rec = Recorder()
    watcher = make_watcher(rec)
    watcher.start()
    staging = tmp_path / "staging"
    for name in ("copied", "moved"):
        for rel in ("a.jpg", "2024/b.jpg", "2024/03/c.jpg"):
            path = staging / name / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rel.encode())

    shutil.copytree(staging / "copied", inbox / "copied")
    os.rename(staging / "moved", inbox / "moved")

    expected = {
        inbox / name / rel
        for name in ("copied", "moved")
        for rel in ("a.jpg", "2024/b.jpg", "2024/03/c.jpg")
    }
    assert wait_until(lambda: set(rec.paths()) == expected)
    assert settled(watcher)
    assert len(rec.paths()) == len(expected)


def test_a_folder_event_alone_leads_to_its_files(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    sentinel = inbox / "sentinel.jpg"
    sentinel.write_bytes(b"s")
    injector = Injector()
    rec = Recorder()
    watcher = make_watcher(rec, observer_factory=injector)
    watcher.start()
    assert wait_until(lambda: sentinel in rec.paths())
    files = [inbox / "album" / "a.jpg", inbox / "album" / "2024" / "b.jpg"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())

    injector.emit(DirCreatedEvent(str(inbox / "album")))

    assert wait_until(lambda: all(p in rec.paths() for p in files))


def test_a_folder_moved_in_is_looked_at_once_per_file(
    inbox: Path,
    make_watcher: Callable[..., InboxWatcher],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trip = inbox / "trip"
    folders = [trip, trip / "day1", trip / "day1" / "am"]
    files = [folder / f"{n}.jpg" for n, folder in enumerate(folders)]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())
    rec = Recorder()
    watcher = make_watcher(rec, settle_seconds=0)
    looked: Counter[Path] = Counter()
    offer = watcher._offer

    def counting(path: Path, st: os.stat_result) -> bool:
        looked[path] += 1
        return offer(path, st)

    monkeypatch.setattr(watcher, "_offer", counting)
    # What watchdog reports for a tree renamed into the inbox: every folder, every file.
    for folder in folders:
        watcher._on_event(DirCreatedEvent(str(folder)))
    for path in files:
        watcher._on_event(FileCreatedEvent(str(path)))

    watcher._tick()

    assert looked == Counter(files)
    assert sorted(rec.paths()) == sorted(files)


def test_an_event_below_a_symlinked_folder_is_not_followed(
    tmp_path: Path, inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inner.jpg").write_bytes(b"inner")
    injector = Injector()
    rec = Recorder()
    watcher = make_watcher(rec, observer_factory=injector)
    watcher.start()
    (inbox / "linked").symlink_to(outside)
    regular = inbox / "regular.jpg"
    regular.write_bytes(b"r")

    injector.emit(FileCreatedEvent(str(inbox / "linked" / "inner.jpg")))
    injector.emit(DirCreatedEvent(str(inbox / "linked")))
    injector.emit(FileCreatedEvent(str(regular)))

    assert wait_until(lambda: regular in rec.paths())
    assert settled(watcher)
    assert rec.paths() == [regular]


def test_ignored_files_are_never_announced_until_renamed(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    rec = Recorder()
    watcher = make_watcher(rec)
    watcher.start()
    ignored = [
        inbox / ".dotfile.jpg",
        inbox / ".syncthing.x.jpg.tmp",
        inbox / "video.mp4.part",
        inbox / "download.crdownload",
        inbox / "~lock.docx",
        inbox / ".hidden" / "photo.jpg",
    ]
    for path in ignored:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"data")
    sentinel = inbox / "sentinel.jpg"
    sentinel.write_bytes(b"s")

    assert wait_until(lambda: sentinel in rec.paths())
    assert settled(watcher)
    assert watcher.scan() == 0
    assert rec.paths() == [sentinel]

    done = inbox / "video.mp4"
    os.rename(inbox / "video.mp4.part", done)
    assert wait_until(lambda: done in rec.paths())
    assert settled(watcher)
    assert rec.paths() == [sentinel, done]


@pytest.mark.parametrize("observer", ["inotify", "polling"])
def test_special_files_and_symlinks_are_skipped_without_blocking(
    tmp_path: Path,
    inbox: Path,
    make_watcher: Callable[..., InboxWatcher],
    observer: str,
) -> None:
    outside = tmp_path / "outside"
    (outside / "album").mkdir(parents=True)
    (outside / "secret.jpg").write_bytes(b"secret")
    (outside / "album" / "inner.jpg").write_bytes(b"inner")
    rec = Recorder()
    factory = raise_enospc if observer == "polling" else None
    watcher = make_watcher(rec, observer_factory=factory)
    watcher.start()
    assert watcher.mode == observer

    os.mkfifo(inbox / "fifo")
    sock_path = inbox / "s.sock"
    assert len(str(sock_path)) < 100  # AF_UNIX path limit
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(sock_path))
    try:
        (inbox / "link_out.jpg").symlink_to(outside / "secret.jpg")
        (inbox / "loop_a").symlink_to(inbox / "loop_b")
        (inbox / "loop_b").symlink_to(inbox / "loop_a")
        (inbox / "linked_album").symlink_to(outside / "album")
        regular = inbox / "regular.jpg"
        regular.write_bytes(b"regular")

        assert wait_until(lambda: regular in rec.paths())
        assert settled(watcher)
        assert watcher.scan() == 0
        assert rec.paths() == [regular]
        assert watcher.is_alive()
    finally:
        sock.close()


@pytest.mark.parametrize(
    "factory", [raise_enospc, EmfileObserver], ids=["factory-enospc", "start-emfile"]
)
def test_falls_back_to_polling_when_inotify_fails(
    inbox: Path,
    make_watcher: Callable[..., InboxWatcher],
    factory: Callable[[], BaseObserver],
) -> None:
    before = inbox / "before.jpg"
    before.write_bytes(b"b")
    rec = Recorder()
    watcher = make_watcher(rec, observer_factory=factory)
    watcher.start()
    assert watcher.mode == "polling"
    assert wait_until(lambda: before in rec.paths())

    after = inbox / "sub" / "after.jpg"
    after.parent.mkdir()
    after.write_bytes(b"a")  # the rescan interval is long: only polling finds it
    assert wait_until(lambda: after in rec.paths())
    assert watcher.is_alive()


def test_default_observer_is_inotify(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    watcher = make_watcher(Recorder())
    watcher.start()
    assert watcher.mode == "inotify"
    assert watcher.is_alive()


def test_on_ready_failure_does_not_stop_later_announcements(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    rec = Recorder(fail_for={"bad.jpg"})
    watcher = make_watcher(rec)
    watcher.start()
    bad = inbox / "bad.jpg"
    bad.write_bytes(b"bad")
    assert wait_until(lambda: bad in rec.paths())
    good = [inbox / "good1.jpg", inbox / "good2.jpg"]
    for path in good:
        path.write_bytes(path.name.encode())

    assert wait_until(lambda: all(p in rec.paths() for p in good))
    assert watcher.is_alive()
    # The failed file is offered again by the next full scan.
    assert settled(watcher)
    assert watcher.scan() == 1
    assert wait_until(lambda: rec.count(bad) == 2)


def test_rescan_skips_unchanged_files_and_announces_changed_ones(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    path = inbox / "a.jpg"
    path.write_bytes(b"first")
    rec = Recorder()
    watcher = make_watcher(rec, observer_factory=no_events_observer)
    watcher.start()
    assert wait_until(lambda: rec.count(path) == 1)
    assert settled(watcher)

    assert watcher.scan() == 0
    assert watcher.pending == 0

    with path.open("ab") as fh:
        fh.write(b" and more")
    assert watcher.scan() == 1
    assert wait_until(lambda: rec.count(path) == 2)
    assert rec.sizes(path) == [5, 14]

    new = inbox / "b.jpg"
    new.write_bytes(b"b")
    assert watcher.scan() == 1
    assert wait_until(lambda: new in rec.paths())


def test_periodic_rescan_finds_files_whose_events_were_missed(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    sentinel = inbox / "sentinel.jpg"
    sentinel.write_bytes(b"s")
    rec = Recorder()
    watcher = make_watcher(
        rec, observer_factory=no_events_observer, rescan_interval_seconds=0.3
    )
    watcher.start()
    assert wait_until(lambda: sentinel in rec.paths())

    missed = inbox / "missed.jpg"
    missed.write_bytes(b"m")
    assert wait_until(lambda: missed in rec.paths())
    assert rec.count(sentinel) == 1


def test_changed_and_recreated_files_are_announced_again(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    rec = Recorder()
    watcher = make_watcher(rec)
    watcher.start()
    path = inbox / "a.jpg"
    path.write_bytes(b"one")
    assert wait_until(lambda: rec.count(path) == 1)

    path.write_bytes(b"two!")
    assert wait_until(lambda: rec.count(path) == 2)

    path.unlink()
    path.write_bytes(b"two!")
    assert wait_until(lambda: rec.count(path) == 3)
    assert settled(watcher)
    assert watcher.scan() == 0
    assert rec.sizes(path) == [3, 4, 4]


def test_is_known_suppresses_announcements_of_files_the_caller_has(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    known = inbox / "known.jpg"
    fresh = inbox / "fresh.jpg"
    known.write_bytes(b"k")
    fresh.write_bytes(b"f")
    asked: list[Path] = []

    def is_known(path: Path) -> bool:
        asked.append(path)
        return path == known

    rec = Recorder()
    watcher = make_watcher(rec, is_known=is_known, observer_factory=no_events_observer)
    watcher.start()
    assert wait_until(lambda: fresh in rec.paths())
    assert settled(watcher)
    assert watcher.scan() == 0
    assert rec.paths() == [fresh]
    assert asked.count(known) == 1  # remembered, not asked on every rescan

    known.write_bytes(b"changed")
    assert watcher.scan() == 1
    assert wait_until(lambda: known in rec.paths())


def test_stop_is_prompt_idempotent_and_leaves_no_threads(
    inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    (inbox / "a.jpg").write_bytes(b"a")
    before = set(threading.enumerate())
    rec = Recorder()
    watcher = make_watcher(rec, settle_seconds=60)  # a file still settling at stop
    watcher.start()
    assert wait_until(lambda: watcher.pending == 1)
    assert watcher.is_alive()

    watcher.stop(timeout=5)
    watcher.stop(timeout=5)

    assert not watcher.is_alive()
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []
    assert rec.paths() == []
    with pytest.raises(RuntimeError):
        watcher.start()


def test_start_requires_an_existing_inbox(tmp_path: Path) -> None:
    watcher = InboxWatcher(tmp_path / "missing", Recorder())
    with pytest.raises(FileNotFoundError):
        watcher.start()
    watcher.stop()
    assert not watcher.is_alive()


def test_a_missing_inbox_is_reported_and_its_memory_kept(
    tmp_path: Path, inbox: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    path = inbox / "a.jpg"
    path.write_bytes(b"a")
    rec = Recorder()
    watcher = make_watcher(rec, observer_factory=no_events_observer)
    watcher.start()
    assert wait_until(lambda: rec.count(path) == 1)
    assert settled(watcher)

    # An unmounted share looks like this; coming back must not re-announce files.
    os.rename(inbox, tmp_path / "away")
    assert watcher.scan() == 0
    os.rename(tmp_path / "away", inbox)
    assert watcher.scan() == 0
    assert rec.count(path) == 1


def test_a_dropped_folder_is_logged_per_group_not_per_file(
    inbox: Path, tmp_path: Path, make_watcher: Callable[..., InboxWatcher]
) -> None:
    from loguru import logger

    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{message}")
    try:
        rec = Recorder()
        watcher = make_watcher(rec)
        watcher.start()
        staging = tmp_path / "staging"
        staging.mkdir()
        for i in range(200):
            (staging / f"img_{i:03d}.jpg").write_bytes(b"%d" % i)
        os.rename(staging, inbox / "drop")
        assert wait_until(lambda: len(rec.paths()) >= 200)
        assert settled(watcher)
    finally:
        logger.remove(sink)
    summaries = [line for line in lines if "finished arriving" in line]
    assert sum(int(line.split()[0]) for line in summaries) == 200
    assert len(summaries) < 20
