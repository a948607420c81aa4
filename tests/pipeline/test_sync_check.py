"""check_batch / required_devices against a scripted Syncthing on MockTransport."""

from __future__ import annotations

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
    """Answers the REST calls check_batch makes, from plain Python state."""

    devices: list[str] = field(default_factory=lambda: [ME, DEV_A, DEV_B])
    shared_with: list[str] = field(default_factory=lambda: [ME, DEV_A, DEV_B])
    index: dict[str, dict[str, Any]] = field(default_factory=dict)
    need: dict[str, list[dict]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def indexed(self, *files: BatchFile) -> FakeSyncthing:
        for f in files:
            name = f"{BATCH}/{f.path}"
            self.index[name] = {
                "global": entry(name, f.size),
                "local": entry(name, f.size),
                "availability": [],
            }
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        self.calls.append(path)
        if path == "/rest/system/status":
            return httpx.Response(200, json={"myID": ME})
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
            files = self.need.get(params["device"], [])
            chunk = files[(page - 1) * perpage : page * perpage]
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
    assert fake.calls.count("/rest/db/remoteneed") == 2


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


def test_remote_need_on_the_second_page_blocks_sync() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    # 500 entries of other batches fill page one; ours is the 501st.
    fake.need[DEV_B] = [entry(f"batch_000009/{i}.jpg", 10) for i in range(500)]
    fake.need[DEV_B].append(entry(f"{BATCH}/sub/VID_0002.mp4", 3000))
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.missing_devices == (DEV_B,)
    assert verdict.bytes_needed == 3000 and verdict.progress == 25.0
    assert "still needed by" in verdict.detail and DEV_B in verdict.detail
    assert fake.calls.count("/rest/db/remoteneed") == 3  # A: 1 page, B: 2 pages


def test_progress_is_the_least_across_devices() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.need[DEV_A] = [entry(f"{BATCH}/IMG_0001.jpg", 1000)]
    fake.need[DEV_B] = [
        entry(f"{BATCH}/IMG_0001.jpg", 1000),
        entry(f"{BATCH}/sub/VID_0002.mp4", 3000),
    ]
    verdict = check(fake)
    assert verdict.bytes_needed == TOTAL and verdict.progress == 0.0
    assert verdict.missing_devices == (DEV_A, DEV_B)


def test_deleted_entries_and_other_batches_do_not_count() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.need[DEV_A] = [
        entry(f"{BATCH}/old.jpg", 50, deleted=True),
        entry("batch_0000010/IMG_0001.jpg", 1000),  # same prefix, other batch
        entry("batch_000001.txt", 5),
    ]
    assert check(fake).synced


def test_only_the_directory_still_needed_is_not_synced_and_below_100() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    fake.need[DEV_A] = [{**entry(BATCH, 128), "type": "FILE_INFO_TYPE_DIRECTORY"}]
    verdict = check(fake)
    assert not verdict.synced
    assert verdict.progress < 100.0 and verdict.bytes_needed == 0
    assert verdict.missing_devices == (DEV_A,)


def test_no_required_devices_is_never_synced() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    with fake.client() as client:
        verdict = check_batch(client, FOLDER, BATCH, FILES, [])
    assert not verdict.synced and verdict.progress == 0.0
    assert "no required devices" in verdict.detail
    assert fake.calls == []


def test_device_ids_compare_case_insensitively() -> None:
    fake = FakeSyncthing().indexed(*FILES)
    assert check(fake, [DEV_A.lower(), DEV_A]).synced
    assert fake.calls.count("/rest/db/remoteneed") == 1


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
