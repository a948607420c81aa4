"""check_batch / required_devices against a scripted Syncthing on MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pipeline.sync_check import BatchFile, check_batch, required_devices
from pipeline.syncthing import SyncthingClient, SyncthingUnavailable

ME = "MEMEMEM-AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE-FFFFFFF-GGGGGGG"
DEV_A = "AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA-AAAAAAA"
DEV_B = "BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB-BBBBBBB"
FOLDER = "media"
BATCH = "batch_000001"
FILES = [
    BatchFile("IMG_0001.jpg", 1000),
    BatchFile("sub/VID_0002.mp4", 3000),
    BatchFile("manifest.json", 0),
]
TOTAL = 4000


def entry(name: str, size: int, version: str = "ME:1", deleted: bool = False) -> dict:
    return {
        "name": name,
        "size": size,
        "deleted": deleted,
        "invalid": False,
        "ignored": False,
        "version": [version],
        "type": "FILE_INFO_TYPE_FILE",
    }


@dataclass
class FakeSyncthing:
    """Answers the REST calls check_batch makes, from plain Python state.

    ``index`` maps names to ``/rest/db/file`` answers; ``indexed`` puts batch files
    there held by ``holders`` (default: every remote device). ``need`` is each
    device's ``/rest/db/remoteneed`` list, a callable of the page number so it can
    change between pages or be generated on demand (check_batch must not need it).
    """

    devices: list[str] = field(default_factory=lambda: [ME, DEV_A, DEV_B])
    shared_with: list[str] = field(default_factory=lambda: [ME, DEV_A, DEV_B])
    connected: list[str] = field(default_factory=lambda: [DEV_A, DEV_B])
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    need: dict[str, Callable[[int, int], list[dict]]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def indexed(
        self, *files: BatchFile, holders: tuple[str, ...] = (DEV_A, DEV_B)
    ) -> FakeSyncthing:
        for f in files:
            name = f"{BATCH}/{f.path}"
            self.index[name] = {
                "global": entry(name, f.size),
                "local": entry(name, f.size),
                "availability": [{"id": d, "fromTemporary": False} for d in holders],
            }
        return self

    def hold(self, path: str, *holders: str, temporary: bool = False) -> None:
        self.index[f"{BATCH}/{path}"]["availability"] = [
            {"id": d, "fromTemporary": temporary} for d in holders
        ]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        self.calls.append(path)
        if path == "/rest/system/status":
            return httpx.Response(200, json={"myID": ME})
        if path == "/rest/system/connections":
            conns = {d: {"connected": d in self.connected} for d in self.devices}
            return httpx.Response(200, json={"connections": conns})
        if path == "/rest/config/devices":
            return httpx.Response(200, json=[{"deviceID": d} for d in self.devices])
        if path == f"/rest/config/folders/{FOLDER}":
            devices = [{"deviceID": d} for d in self.shared_with]
            return httpx.Response(200, json={"id": FOLDER, "devices": devices})
        if path == "/rest/db/file":
            found = self.index.get(params["file"])
            if found is None:
                return httpx.Response(404, text="No such object in the index")
            return httpx.Response(200, json=found)
        if path == "/rest/db/remoteneed":
            page, perpage = int(params["page"]), int(params["perpage"])
            source = self.need.get(params["device"])
            chunk = source(page, perpage) if source else []
            return httpx.Response(
                200, json={"files": chunk, "page": page, "perpage": perpage}
            )
        return httpx.Response(404, text="not scripted")

    def client(self) -> SyncthingClient:
        return SyncthingClient(
            "http://st.test", "k", transport=httpx.MockTransport(self), retries=0
        )


def check(fake: FakeSyncthing, devices: list[str] | None = None) -> Any:
    with fake.client() as client:
        return check_batch(client, FOLDER, BATCH, FILES, devices or [DEV_A, DEV_B])


def test_all_good_is_synced_with_progress_100() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    verdict = check(fake)
    assert verdict.synced
    assert verdict.progress == 100.0
    assert (verdict.bytes_total, verdict.bytes_needed) == (TOTAL, 0)
    assert verdict.missing_devices == ()
    assert "held by every required device" in verdict.detail
    assert fake.calls.count("/rest/db/file") == len(FILES)
    assert "/rest/db/remoteneed" not in fake.calls


def test_device_not_configured() -> None:
    fake = FakeSyncthing(devices=[ME, DEV_A]).indexed(*FILES)
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.missing_devices == (DEV_B,)
    assert verdict.bytes_needed == TOTAL and verdict.progress == 0.0
    assert "not configured" in verdict.detail and DEV_B in verdict.detail


def test_file_missing_from_local_index_counts_as_fully_needed() -> None:
    fake = FakeSyncthing().indexed(FILES[0], FILES[2])
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.bytes_needed == 3000
    assert verdict.progress == 25.0
    assert verdict.missing_devices == (DEV_A, DEV_B)
    assert f"{BATCH}/sub/VID_0002.mp4" in verdict.detail
    assert "not in the local Syncthing index" in verdict.detail


def test_size_mismatch_is_not_synced() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.index[f"{BATCH}/IMG_0001.jpg"]["global"]["size"] = 999
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.bytes_needed == 1000
    assert "999" in verdict.detail


def test_version_mismatch_is_not_synced() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.index[f"{BATCH}/IMG_0001.jpg"]["global"]["version"] = ["OTHER:7"]
    verdict = check(fake)
    assert not verdict.synced
    assert "version" in verdict.detail


def test_globally_deleted_file_is_not_synced() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.index[f"{BATCH}/manifest.json"]["global"]["deleted"] = True
    verdict = check(fake)
    assert not verdict.synced and "deleted" in verdict.detail


@pytest.mark.parametrize("flag", ["deleted", "invalid", "ignored"])
@pytest.mark.parametrize("path", ["IMG_0001.jpg", "manifest.json"])
def test_local_entry_deleted_invalid_or_ignored_is_not_synced(
    flag: str, path: str
) -> None:
    # Everything else agrees (same version and size, every remote has the global
    # version): only the local entry's flag says this copy is not ours to vouch for.
    fake = FakeSyncthing().indexed(*FILES)
    fake.index[f"{BATCH}/{path}"]["local"][flag] = True
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.missing_devices == (DEV_A, DEV_B)
    assert f"{BATCH}/{path}: local index entry is deleted, invalid or ignored" in (
        verdict.detail
    )
    assert verdict.progress < 100.0


def test_a_file_a_device_does_not_hold_blocks_sync() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.hold("sub/VID_0002.mp4", DEV_A)
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.missing_devices == (DEV_B,)
    assert verdict.bytes_needed == 3000 and verdict.progress == 25.0
    assert "still needed by: " + DEV_B in verdict.detail
    assert "not connected" not in verdict.detail


def test_a_temporary_copy_is_not_held() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.hold("IMG_0001.jpg", DEV_A, DEV_B, temporary=True)
    verdict = check(fake)
    assert not verdict.synced and verdict.bytes_needed == 1000


def test_an_empty_file_not_held_keeps_the_batch_below_100() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.hold("manifest.json", DEV_B)
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.progress < 100.0 and verdict.bytes_needed == 0
    assert verdict.missing_devices == (DEV_A,)


def test_progress_is_the_least_across_devices() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.hold("IMG_0001.jpg")
    fake.hold("sub/VID_0002.mp4", DEV_A)
    verdict = check(fake)
    assert verdict.bytes_needed == TOTAL and verdict.progress == 0.0
    assert verdict.missing_devices == (DEV_A, DEV_B)


def test_a_disconnected_device_is_named_and_never_assumed() -> None:
    # Syncthing lists only connected devices in availability: a remote that went
    # away is confirmed when it comes back, not before.
    fake = FakeSyncthing(connected=[DEV_A]).indexed(*FILES, holders=(DEV_A,))
    verdict = check(fake)
    assert not verdict.synced and verdict.missing_devices == (DEV_B,)
    assert f"{DEV_B} (not connected)" in verdict.detail


def test_a_need_list_that_shifts_between_pages_gives_no_false_synced() -> None:
    # The remote still lacks our last file. Its need list is long (old deletions)
    # and shrinks while being paged: entries before ours leave between two page
    # requests, so offset paging would step over ours and call the batch synced.
    fake = FakeSyncthing().indexed(*FILES)
    fake.hold("sub/VID_0002.mp4", DEV_A)
    ours = entry(f"{BATCH}/sub/VID_0002.mp4", 3000)
    others = [entry(f"batch_000009/{i}.jpg", 10) for i in range(600)]
    served: list[int] = []

    def shifting(page: int, perpage: int) -> list[dict]:
        served.append(page)
        # Page two is cut from a list that lost its first 200 entries meanwhile.
        listing = others + [ours] if page == 1 else others[200:] + [ours]
        return listing[(page - 1) * perpage : page * perpage]

    fake.need[DEV_B] = shifting
    paged = [e for p in (1, 2) for e in shifting(p, 500)]
    assert ours not in paged  # the trap is real: paging alone misses our entry
    served.clear()
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.missing_devices == (DEV_B,) and verdict.bytes_needed == 3000
    assert served == []


def test_a_poll_costs_the_batch_not_the_library() -> None:
    # A library of 1,000,000 sorted files: the remote's need list keeps each one as
    # a deleted entry (receive-only with ignoreDelete). A 500-file batch must cost
    # O(500) requests, whatever that list holds.
    library = 1_000_000
    served: list[int] = []

    def deleted(page: int, perpage: int) -> list[dict]:
        served.append(page)
        first = (page - 1) * perpage
        last = min(library, first + perpage)
        return [entry(f"old/{i}.jpg", 0, deleted=True) for i in range(first, last)]

    files = [BatchFile(f"IMG_{i:04d}.jpg", 100 + i) for i in range(500)]
    fake = FakeSyncthing(shared_with=[ME, DEV_A]).indexed(*files, holders=(DEV_A,))
    fake.need[DEV_A] = deleted
    with fake.client() as client:
        devices = required_devices(client, FOLDER, [])
        verdict = check_batch(client, FOLDER, BATCH, files, devices)
    assert verdict.synced
    assert len(fake.calls) <= len(files) + 5
    assert fake.calls.count("/rest/db/file") == len(files)
    assert served == []


def test_no_required_devices_is_never_synced() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    with fake.client() as client:
        verdict = check_batch(client, FOLDER, BATCH, FILES, [])
    assert not verdict.synced and verdict.progress == 0.0
    assert "no required devices" in verdict.detail
    assert fake.calls == []


def test_device_ids_compare_case_insensitively() -> None:
    fake = FakeSyncthing().indexed(*FILES, holders=(DEV_A.lower(),))
    assert check(fake, [DEV_A.lower(), DEV_A]).synced


def test_client_errors_propagate() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="db error")

    client = SyncthingClient(
        "http://st.test", "k", transport=httpx.MockTransport(down), retries=0
    )
    with pytest.raises(SyncthingUnavailable):
        check_batch(client, FOLDER, BATCH, FILES, [DEV_A])


def test_required_devices_configured_wins_normalized_and_unique() -> None:
    fake = FakeSyncthing()
    with fake.client() as client:
        got = required_devices(client, FOLDER, [f" {DEV_B.lower()} ", DEV_B, DEV_A])
    assert got == [DEV_B, DEV_A]
    assert fake.calls == []


def test_required_devices_default_to_the_folder_share_except_me() -> None:
    fake = FakeSyncthing(shared_with=[ME, DEV_B])
    with fake.client() as client:
        assert required_devices(client, FOLDER, []) == [DEV_B]
    fake = FakeSyncthing(shared_with=[ME])
    with fake.client() as client:
        assert required_devices(client, FOLDER, []) == []
