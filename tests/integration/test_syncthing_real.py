"""SyncthingClient and check_batch against two real Syncthing instances."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from syncthing_env import (
    GENERATE_ARGS,
    SERVE_ARGS,
    SYNCTHING_BIN,
    SyncthingPair,
    device_id_from_config,
    generate_command,
    serve_command,
    start_pair,
    syncthing_pair,
    wait_for,
)

from pipeline.sync_check import BatchFile, SyncVerdict, check_batch, required_devices
from pipeline.syncthing import SyncthingClient, SyncthingUnauthorized

__all__ = ["syncthing_pair"]  # the fixture, imported so pytest finds it here

SYNC_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyncthingPair]:
    """One pair shared by the tests that only add new batches."""
    with start_pair(tmp_path_factory.mktemp("syncthing")) as started:
        yield started


@pytest.fixture
def client(pair: SyncthingPair) -> Iterator[SyncthingClient]:
    with pair.client() as c:
        yield c


def make_batch(root: Path, name: str, sizes: dict[str, int]) -> list[BatchFile]:
    """Write a batch folder of random files; return its files as check_batch wants."""
    files = []
    for rel, size in sizes.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
        files.append(BatchFile(rel, size))
    return files


def digests(root: Path, name: str, files: list[BatchFile]) -> dict[str, str]:
    return {
        f.path: hashlib.sha256((root / name / f.path).read_bytes()).hexdigest()
        for f in files
    }


def wait_synced(
    pair: SyncthingPair, client: SyncthingClient, name: str, files: list[BatchFile]
) -> SyncVerdict:
    devices = [pair.remote.device_id]

    def synced() -> SyncVerdict | None:
        verdict = check_batch(client, pair.folder_id, name, files, devices)
        return verdict if verdict.synced else None

    return wait_for(f"{name} to sync", synced, SYNC_TIMEOUT, interval=0.2)


def test_batch_syncs_with_identical_content(
    pair: SyncthingPair, client: SyncthingClient
) -> None:
    name = "batch_000001"
    files = make_batch(
        pair.local_dir,
        name,
        {
            "IMG_0001.jpg": 1_500_000,
            "2024/VID_0002.mp4": 2_000_000,
            "manifest.json": 300,
            "SHA256SUMS": 200,
        },
    )
    devices = required_devices(client, pair.folder_id, [])
    assert devices == [pair.remote.device_id]

    before = check_batch(client, pair.folder_id, name, files, devices)
    assert not before.synced and before.progress == 0.0
    assert "not in the local Syncthing index" in before.detail

    client.scan(pair.folder_id, name)
    verdict = wait_synced(pair, client, name, files)
    assert verdict.progress == 100.0 and verdict.bytes_total == 3_500_500
    assert digests(pair.remote_dir, name, files) == digests(pair.local_dir, name, files)


def test_batch_waits_for_a_stopped_remote(
    pair: SyncthingPair, client: SyncthingClient
) -> None:
    name = "batch_000002"
    devices = [pair.remote.device_id]
    pair.stop_remote()
    try:
        with pair.remote.client(retries=0) as remote:
            assert remote.health() == "unreachable"
        files = make_batch(pair.local_dir, name, {"a.jpg": 400_000, "b.jpg": 600_000})
        client.scan(pair.folder_id, name)
        for _ in range(2):  # asked twice: nothing changes while the remote is down
            verdict = check_batch(client, pair.folder_id, name, files, devices)
            assert not verdict.synced
            assert verdict.progress < 100.0 and verdict.bytes_needed > 0
            assert verdict.missing_devices == (pair.remote.device_id,)
            assert "still needed by" in verdict.detail
            assert f"{pair.remote.device_id} (not connected)" in verdict.detail
        assert not (pair.remote_dir / name).exists()
    finally:
        pair.start_remote()
    wait_synced(pair, client, name, files)
    assert digests(pair.remote_dir, name, files) == digests(pair.local_dir, name, files)


def test_local_delete_leaves_the_remote_copy(
    pair: SyncthingPair, client: SyncthingClient
) -> None:
    name = "batch_000003"
    files = make_batch(pair.local_dir, name, {"keep.jpg": 300_000})
    client.scan(pair.folder_id, name)
    wait_synced(pair, client, name, files)
    expected = digests(pair.remote_dir, name, files)

    shutil.rmtree(pair.local_dir / name)
    client.scan(pair.folder_id, name)
    rel = f"{name}/keep.jpg"
    assert client.db_file(pair.folder_id, rel)["global"]["deleted"]  # type: ignore[index]

    with pair.remote.client() as remote:

        def deletion_settled() -> bool:
            # The remote knows of the delete and has nothing left to do about it;
            # without ignoreDelete it would still need (then perform) the delete.
            entry = remote.db_file(pair.folder_id, rel) or {}
            status = remote.folder_status(pair.folder_id)
            return bool(
                entry.get("global", {}).get("deleted")
                and status["needTotalItems"] == 0
                and status["state"] == "idle"
            )

        wait_for("remote to take in the delete", deletion_settled, SYNC_TIMEOUT)
        assert not remote.db_file(pair.folder_id, rel)["local"]["deleted"]  # type: ignore[index]
    assert digests(pair.remote_dir, name, files) == expected


class CountingTransport(httpx.HTTPTransport):
    """A real HTTP transport that records the path of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return super().handle_request(request)


def test_sorted_files_left_in_the_remote_need_list_cost_nothing(
    pair: SyncthingPair, client: SyncthingClient
) -> None:
    # What sorting does to the remote's need list: a synced batch removed from
    # sync_dir stays there as deleted entries (receive-only, ignoreDelete), for good.
    old = "batch_000004"
    old_files = make_batch(pair.local_dir, old, {f"{i}.jpg": 1_000 for i in range(20)})
    client.scan(pair.folder_id, old)
    wait_synced(pair, client, old, old_files)
    shutil.rmtree(pair.local_dir / old)
    client.scan(pair.folder_id, old)

    def deleted_needed() -> list[str] | None:
        answer = client._http.get(
            "/rest/db/remoteneed",
            params={"folder": pair.folder_id, "device": pair.remote.device_id},
        ).json()
        names = [f["name"] for f in answer["files"] or [] if f.get("deleted")]
        return names if len(names) >= len(old_files) else None

    assert len(wait_for("deletions in remoteneed", deleted_needed, SYNC_TIMEOUT)) > 20

    name = "batch_000005"
    files = make_batch(pair.local_dir, name, {"a.jpg": 5_000, "b.jpg": 6_000})
    client.scan(pair.folder_id, name)
    wait_synced(pair, client, name, files)
    counting = CountingTransport()
    with pair.client(transport=counting) as counted:
        verdict = check_batch(
            counted, pair.folder_id, name, files, [pair.remote.device_id]
        )
    assert verdict.synced
    assert counting.paths == ["/rest/config/devices"] + ["/rest/db/file"] * 2


def test_wrong_api_key_is_unauthorized(syncthing_pair: SyncthingPair) -> None:
    wrong = "not-the-key-" + syncthing_pair.api_key[::-1]
    with SyncthingClient(syncthing_pair.url, wrong, retries=3, sleep=_no_sleep) as bad:
        with pytest.raises(SyncthingUnauthorized) as info:
            bad.my_id()
        assert bad.health() == "unauthorized"
        with pytest.raises(SyncthingUnauthorized):
            check_batch(bad, syncthing_pair.folder_id, "batch_000001", [], ["X"])
    assert wrong not in str(info.value) and syncthing_pair.api_key not in str(
        info.value
    )
    with syncthing_pair.client() as good:
        assert good.my_id() == syncthing_pair.local.device_id
        assert good.health() == "ok"


# Flags Syncthing 2 removed or renamed: the fixture must not use them.
REMOVED_IN_2 = {"--no-default-folder", "--skip-port-probing", "--paths", "--generate"}
# Flags each Syncthing 2 subcommand accepts (docs.syncthing.net, Command Line
# Operation): what the fixture uses must be in both this and the installed 1.x help.
SYNCTHING_2_ACCEPTS = {
    "generate": {"--home", "--config", "--data", "--gui-user", "--gui-password"},
    "serve": {"--home", "--no-browser", "--no-restart", "--no-upgrade"},
}


@pytest.mark.parametrize(
    ("args", "build"), [(GENERATE_ARGS, generate_command), (SERVE_ARGS, serve_command)]
)
def test_fixture_uses_only_flags_both_versions_accept(
    tmp_path: Path, args: tuple[str, ...], build: object
) -> None:
    command, flags = args[0], set(args[1:])
    assert not flags & REMOVED_IN_2
    assert flags <= SYNCTHING_2_ACCEPTS[command]
    installed = subprocess.run(
        [SYNCTHING_BIN, command, "--help"], capture_output=True, text=True, timeout=30
    )
    for flag in flags:
        assert flag in installed.stdout + installed.stderr, flag
    built = build(tmp_path)  # type: ignore[operator]
    assert built[:2] == [SYNCTHING_BIN, command]
    assert {a for a in built if a.startswith("--")} == flags


def test_device_id_is_read_from_the_generated_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        generate_command(home),
        capture_output=True,
        text=True,
        env={"HOME": str(tmp_path), "STNODEFAULTFOLDER": "1", "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=True,
    )
    # 1.x also prints it; 2.x does not, which is why the fixture reads config.xml.
    printed = re.search(r"Device ID:\s*(\S+)", result.stdout + result.stderr)
    assert printed is not None
    assert device_id_from_config(home / "config.xml") == printed.group(1)


def test_device_id_from_a_syncthing_2_shaped_config(tmp_path: Path) -> None:
    device = "-".join(["ABCDEFG"] * 8)
    config = tmp_path / "config.xml"
    config.write_text(
        f'<configuration version="51"><device id="{device}" name="x"></device>'
        '<gui tls="false"><address>127.0.0.1:8384</address></gui>'
        '<defaults><folder id=""><device id=""></device></folder>'
        '<device id=""></device></defaults></configuration>'
    )
    assert device_id_from_config(config) == device
    config.write_text('<configuration version="37"></configuration>')
    with pytest.raises(AssertionError, match="expected one device"):
        device_id_from_config(config)


def _no_sleep(_: float) -> None:
    raise AssertionError("an unauthorized answer must not be retried")
