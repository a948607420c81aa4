"""The shared fixtures themselves: a guard that cannot fail guards nothing."""

from __future__ import annotations

import threading

from tests.conftest import stray_threads


def test_stray_threads_reports_a_thread_left_running() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    leaked = threading.Thread(target=stop.wait, name="leaked-worker")
    leaked.start()
    try:
        assert stray_threads(before, timeout=0.2) == [leaked]
    finally:
        stop.set()
        leaked.join()
    assert stray_threads(before, timeout=0.2) == []


def test_stray_threads_waits_for_a_thread_that_is_stopping() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    ending = threading.Thread(target=stop.wait, name="ending-worker")
    ending.start()
    threading.Timer(0.1, stop.set).start()
    assert stray_threads(before, timeout=5) == []


def test_stray_threads_ignores_daemon_threads() -> None:
    before = set(threading.enumerate())
    stop = threading.Event()
    background = threading.Thread(target=stop.wait, daemon=True)
    background.start()
    try:
        assert stray_threads(before, timeout=0.1) == []
    finally:
        stop.set()
        background.join()
