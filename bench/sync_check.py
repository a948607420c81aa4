"""A Syncthing poll's time against the size of the library (bench for issue 18).

What grows with the library is the remote's need list: with the documented remote
set-up (Receive Only, ``ignoreDelete``) every file ever sorted out of ``sync_dir``
stays there as a deleted entry. This script serves a Syncthing REST API on 127.0.0.1
(real HTTP, real JSON, answers shaped like Syncthing 1.19's) whose remote need list
holds LIBRARY deleted entries, and times, for each library size:

- **poll**: ``check_batch`` of one batch through the real ``SyncthingClient`` — what
  one poll does per batch today (``/rest/db/file`` per batch file);
- **paging** (the baseline, the check before issue 18 did this on top of the same
  per-file calls): paging ``/rest/db/remoteneed`` 500 entries at a time until a short
  page, for one device.

Targets (ratios in the same run): the poll at the largest library takes at most
1.5× the poll with an empty library, with the same number of requests.

A real Syncthing looks a file up in its database in O(log n); this server answers
from a dict, so it shows what the daemon's side costs, and the requests it makes.
Creating 1,000,000 real deletions in a real Syncthing takes hours; the
``tests/integration/test_syncthing_real.py`` test checks the same request count
against a real 1.19 pair with real deleted entries.

    .venv/bin/python bench/sync_check.py [--batch 500] [--library 0 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    Target,
    best_time,
    machine,
    print_table,
    print_verdicts,
    reproduce,
)
from pipeline.sync_check import BatchFile, check_batch  # noqa: E402
from pipeline.syncthing import SyncthingClient  # noqa: E402

ME = "MEMEMEM-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE-FFFFFFF-GGGGGGG"
REMOTE = "REMOTE1-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE-FFFFFFF-GGGGGGG"
FOLDER = "media"
BATCH = "batch_000001"
PAGE = 500


def file_info(name: str, size: int, deleted: bool = False) -> dict[str, Any]:
    """An index entry shaped like Syncthing 1.19's (``/rest/db/file``, remoteneed)."""
    return {
        "deleted": deleted,
        "ignored": False,
        "invalid": False,
        "localFlags": 0,
        "modified": "2026-11-30T23:15:01.684298347Z",
        "modifiedBy": "HD62QRE",
        "mustRescan": False,
        "name": name,
        "noPermissions": False,
        "numBlocks": 0 if deleted else 1,
        "permissions": "0644",
        "sequence": 2,
        "size": 0 if deleted else size,
        "type": "FILE_INFO_TYPE_FILE",
        "version": ["HD62QRE:1796080501"],
    }


class FakeSyncthing(ThreadingHTTPServer):
    """The REST calls of a poll (and the old paging), answered from memory."""

    daemon_threads = True

    def __init__(self, files: list[BatchFile]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.library = 0
        self.requests = 0
        self.index: dict[str, bytes] = {}
        for f in files:
            info = file_info(f"{BATCH}/{f.path}", f.size)
            entry = {
                "availability": [{"id": REMOTE, "fromTemporary": False}],
                "global": info,
                "local": info,
                "mtime": {"err": None, "value": {}},
            }
            self.index[f"{BATCH}/{f.path}"] = json.dumps(entry).encode()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def remote_need(self, page: int, perpage: int) -> bytes:
        first = (page - 1) * perpage
        last = min(self.library, first + perpage)
        files = [file_info(f"old/{i:07d}.jpg", 0, True) for i in range(first, last)]
        return json.dumps({"files": files, "page": page, "perpage": perpage}).encode()


class Handler(BaseHTTPRequestHandler):
    server: FakeSyncthing
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: with Nagle's algorithm on, the body
    # waits for the client's delayed ACK (40 ms a request), which Go's server avoids.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.server.requests += 1
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/rest/system/ping":
            body = b'{"ping": "pong"}'
        elif url.path == "/rest/config/devices":
            body = json.dumps([{"deviceID": ME}, {"deviceID": REMOTE}]).encode()
        elif url.path == "/rest/system/connections":
            conns = {REMOTE: {"connected": True}}
            body = json.dumps({"connections": conns}).encode()
        elif url.path == "/rest/db/file" and query.get("file") in self.server.index:
            body = self.server.index[query["file"]]
        elif url.path == "/rest/db/remoteneed":
            body = self.server.remote_need(int(query["page"]), int(query["perpage"]))
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@contextmanager
def serving(files: list[BatchFile]) -> Iterator[FakeSyncthing]:
    server = FakeSyncthing(files)
    thread = threading.Thread(target=server.serve_forever, name="fake-syncthing")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def page_remote_need(client: SyncthingClient) -> int:
    """What the check did before issue 18, for one device: every page, in order."""
    return _page_real(client, FOLDER, REMOTE)


def measure(
    server: FakeSyncthing,
    files: list[BatchFile],
    sizes: list[int],
    repeats: int,
    baseline_max: int,
) -> list[dict[str, Any]]:
    """Best poll time per library size, rounds interleaved so load hits all alike."""
    results = {n: {"library": n, "poll": float("inf")} for n in sizes}
    with SyncthingClient(server.url, "bench-key", retries=0) as client:

        def poll() -> None:
            verdict = check_batch(client, FOLDER, BATCH, files, [REMOTE])
            assert verdict.synced, verdict.detail

        for _ in range(max(1, repeats)):
            for n in sizes:
                server.library = n
                before = server.requests
                took = best_time(poll, 1)
                results[n]["requests"] = server.requests - before
                results[n]["poll"] = min(results[n]["poll"], took)
        floor = best_time(lambda: [client.ping() for _ in files], repeats)
        for n in sizes:
            server.library = n
            results[n]["floor"] = floor
            paging = pages = None
            if n <= baseline_max:
                before = server.requests
                started = time.perf_counter()
                assert page_remote_need(client) == n
                paging = time.perf_counter() - started
                pages = server.requests - before
            results[n].update(paging=paging, pages=pages)
    return [results[n] for n in sizes]


def measure_real(
    files: list[BatchFile], sizes: list[int], repeats: int, baseline_max: int
) -> list[dict[str, Any]]:
    """The same against two real Syncthing instances (the test fixture), real deletions.

    The library is made for real: files synced to the remote, then deleted here, so
    the remote's need list holds one deleted entry per file, as after sorting.
    """
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests/integration"))
    from syncthing_env import start_pair, wait_for  # noqa: PLC0415

    results = []
    # Small files: what is timed is the check, not Syncthing moving bytes.
    files = [BatchFile(f.path, 1_000 + i) for i, f in enumerate(files)]
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        with start_pair(Path(tmp)) as pair, pair.client(timeout=60) as client:
            _count_requests(client)
            devices = [pair.remote.device_id]
            for i, f in enumerate(files):
                path = pair.local_dir / BATCH / f.path
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes((i.to_bytes(4, "big") * (f.size // 4 + 1))[: f.size])
            client.scan(pair.folder_id, BATCH)

            def synced() -> bool:
                v = check_batch(client, pair.folder_id, BATCH, files, devices)
                return v.synced

            wait_for("the batch to sync", synced, 300, interval=1)
            made = 0
            for n in sorted(sizes):
                _grow_library(pair, client, made, n, wait_for)
                made = n
                before = _counted(client)
                poll = best_time(synced, repeats)
                requests = (_counted(client) - before) // max(1, repeats)
                floor = best_time(lambda: [client.ping() for _ in files], repeats)
                paging = pages = None
                if n <= baseline_max:
                    before = _counted(client)
                    started = time.perf_counter()
                    _page_real(client, pair.folder_id, devices[0])
                    paging = time.perf_counter() - started
                    pages = _counted(client) - before
                results.append(
                    {
                        "library": n,
                        "poll": poll,
                        "requests": requests,
                        "floor": floor,
                        "paging": paging,
                        "pages": pages,
                    }
                )
    return results


def _counted(client: SyncthingClient) -> int:
    return int(getattr(client, "bench_requests", 0))


def _count_requests(client: SyncthingClient) -> None:
    """Count every request the client sends (an httpx event hook)."""
    client.bench_requests = 0  # type: ignore[attr-defined]

    def hook(request: Any) -> None:
        client.bench_requests += 1  # type: ignore[attr-defined]

    client._http.event_hooks["request"].append(hook)


def _page_real(client: SyncthingClient, folder: str, device: str) -> int:
    """Every page of `device`'s need list, in order (the removed client method)."""
    page, seen = 1, 0
    while True:
        answer = client._object(
            "GET",
            "/rest/db/remoteneed",
            params={
                "folder": folder,
                "device": device,
                "page": str(page),
                "perpage": str(PAGE),
            },
        )
        files = answer.get("files") or []
        seen += len(files)
        if len(files) < PAGE:
            return seen
        page += 1


def _grow_library(
    pair: Any, client: SyncthingClient, have: int, want: int, wait: Any
) -> None:
    """Sync files ``have``..``want`` to the remote, then delete them here (sorted)."""
    if want <= have:
        return
    old = pair.local_dir / "old"
    for i in range(have, want):
        path = old / f"{i // 1000:04d}" / f"{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(4, "big"))
    client.scan(pair.folder_id, "old")
    with pair.remote.client(timeout=60) as remote:

        def received() -> bool:
            status = remote.folder_status(pair.folder_id)
            return status["needTotalItems"] == 0 and status["localFiles"] >= want

        wait("the library to reach the remote", received, 900, interval=1)
    for sub in sorted(old.iterdir()):
        for path in sub.iterdir():
            path.unlink()
        sub.rmdir()
    old.rmdir()
    client.scan(pair.folder_id, "old")

    def deletions_listed() -> bool:
        return _page_real(client, pair.folder_id, pair.remote.device_id) >= want

    wait("the deletions in the remote's need list", deletions_listed, 900, interval=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=500, help="files in the batch")
    parser.add_argument(
        "--library",
        type=int,
        nargs="+",
        default=[0, 10_000, 100_000, 1_000_000],
        help="library sizes (deleted entries in the remote's need list)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="best of N polls")
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=1_000_000,
        help="page the need list (the old check) only up to this library size",
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="two real Syncthing instances (/usr/bin/syncthing) instead of the "
        "in-memory REST server; the library is synced and deleted for real",
    )
    args = parser.parse_args(argv)
    print(machine())
    files = [
        BatchFile(f"2024/03/IMG_{i:05d}.jpg", 2_000_000 + i) for i in range(args.batch)
    ]
    rows = []
    if args.real:
        results = measure_real(
            files, sorted(args.library), args.repeats, args.baseline_max
        )
    else:
        with serving(files) as server:
            results = measure(
                server, files, sorted(args.library), args.repeats, args.baseline_max
            )
    for r in results:
        paging = (
            f"paging {r['paging'] * 1000:,.0f} ms in {r['pages']:,} requests"
            if r["paging"] is not None
            else "paging not measured"
        )
        rows.append(
            (
                f"library {r['library']:>9,}",
                f"poll {r['poll'] * 1000:8.1f} ms",
                f"{r['requests']} requests (floor: as many pings "
                f"{r['floor'] * 1000:,.0f} ms); baseline {paging}",
            )
        )
    where = "two real Syncthing 1.x" if args.real else "in-memory REST server"
    title = f"one poll of a {args.batch}-file batch, one remote device ({where})"
    print_table(title, rows)
    print(f"\nreproduce: {reproduce('bench/sync_check.py', sys.argv[1:])}")
    small, large = results[0], results[-1]
    ratio = large["poll"] / small["poll"]
    targets = [
        Target(
            f"poll at library {large['library']:,} / poll at {small['library']:,}",
            ratio,
            1.5,
            at_most=True,
            unit="x",
        ),
        Target(
            "requests at the largest library - at the smallest",
            float(large["requests"] - small["requests"]),
            0,
            at_most=True,
        ),
    ]
    if large["paging"] is not None:
        print(
            f"baseline (old check) at library {large['library']:,}: poll + paging = "
            f"{(large['poll'] + large['paging']) * 1000:,.0f} ms, "
            f"{(large['poll'] + large['paging']) / large['poll']:,.0f}x today's poll"
        )
    return 0 if print_verdicts(targets) else 1


if __name__ == "__main__":
    sys.exit(main())
