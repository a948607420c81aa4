"""Configs that would turn the daemon against its owner are refused: exit 2, key named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon import config as cfg
from tests.conftest import base_config

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "x" * 32


def write(tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(base_config(tmp_path, **overrides)))
    return path


def problems(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path, environ=environ or {})
    return info.value.problems


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_auth_on_with_an_empty_key_is_refused_at_start(tmp_path: Path) -> None:
    """issue 19.2: the API must never be open with auth on; the config is refused too."""
    path = write(tmp_path, auth={"enabled": True, "api_key": ""})
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("auth.api_key: must be set"), result.stderr
    assert "Traceback" not in result.stderr
    # A key from the environment counts: the check runs on what the daemon would use.
    env_key = {"MEDIA_PIPELINE_API_KEY": GOOD_KEY}
    assert cfg.load(path, environ=env_key).settings.auth.api_key == GOOD_KEY


def test_short_keys_are_refused_when_auth_is_on(tmp_path: Path) -> None:
    path = write(tmp_path, auth={"enabled": True, "api_key": "k" * 31})
    (line,) = problems(path)
    assert line == "auth.api_key: must be at least 32 characters (got 31 characters)"
    assert "k" * 31 not in line
    write(tmp_path, auth={"enabled": True, "api_key": "k" * 32})
    assert cfg.load(path, environ={}).settings.auth.api_key == "k" * 32
    # With auth off on loopback a short (unused) key is no problem.
    write(tmp_path, auth={"enabled": False, "api_key": "short"})
    cfg.load(path, environ={})


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "nas.lan"])
def test_auth_off_on_a_network_address_is_refused(tmp_path: Path, host: str) -> None:
    path = write(tmp_path, server={"host": host})
    result = check_config(path)
    assert result.returncode == 2
    assert result.stderr.startswith("auth.enabled: must be true"), result.stderr
    write(tmp_path, server={"host": host}, auth={"enabled": True, "api_key": GOOD_KEY})
    cfg.load(path, environ={})


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_auth_off_on_loopback_is_fine(tmp_path: Path, host: str) -> None:
    cfg.load(write(tmp_path, server={"host": host}), environ={})


@pytest.mark.parametrize(
    ("key", "folder"),
    [
        ("temp_dir", "/etc"),
        ("temp_dir", "/etc/media"),
        ("log_dir", "/var/lib"),
        ("inbox", "/"),
        ("sorted_dir", "/usr/share/photos"),
        ("batch_dir", "/boot/b"),
        ("sync_dir", "/proc/self"),
        ("duplicates_dir", "/sys/x"),
        ("temp_dir", "/dev/shm"),
        ("inbox", "/home"),
        ("inbox", "/root"),
    ],
)
def test_system_folders_are_refused(tmp_path: Path, key: str, folder: str) -> None:
    found = problems(write(tmp_path, paths={key: folder}))
    assert any(line.startswith(f"paths.{key}: ") for line in found), found


def test_a_home_folder_itself_is_refused_but_not_a_folder_in_it(
    tmp_path: Path,
) -> None:
    import pwd

    home = Path(pwd.getpwuid(0).pw_dir)
    found = problems(write(tmp_path, paths={"sorted_dir": str(home)}))
    assert found[0].startswith("paths.sorted_dir: "), found
    # /var/lib/media-pipeline (the default) is fine; /var/lib itself is not.
    ok = write(tmp_path, paths={"temp_dir": str(tmp_path / "var" / "lib" / "x")})
    cfg.load(ok, environ={})


def test_overlapping_folders_are_refused(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    found = problems(write(tmp_path, paths={"temp_dir": str(inbox)}))
    assert found == [
        f"paths.temp_dir: overlaps paths.inbox ({str(inbox)!r}); each folder must "
        f"be separate (got {str(inbox)!r})"
    ]
    nested = problems(write(tmp_path, paths={"batch_dir": str(inbox / "batches")}))
    assert nested[0].startswith("paths.batch_dir: overlaps paths.inbox"), nested
    outer = problems(write(tmp_path, paths={"log_dir": str(tmp_path)}))
    assert outer and all("overlaps" in line for line in outer)


def test_a_database_path_that_is_another_file_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database")
    path = write(tmp_path, database={"path": str(notes)})
    result = check_config(path)
    assert result.returncode == 2
    assert result.stderr.startswith("database.path: is an existing file"), result.stderr
    assert notes.read_text() == "not a database"
    write(tmp_path, database={"path": str(tmp_path)})
    assert problems(path)[0].startswith("database.path: is a folder")
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    write(tmp_path, database={"path": str(empty)})
    cfg.load(path, environ={})


@pytest.mark.parametrize("template", ["x{", "{year}/}", "{}", "{0}/{year}"])
def test_a_sort_template_that_cannot_render_is_refused(
    tmp_path: Path, template: str
) -> None:
    found = problems(write(tmp_path, sort={"template": template}))
    assert len(found) == 1 and found[0].startswith("sort.template: "), found


def test_a_dotenv_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path)
    (tmp_path / ".env").write_bytes(b"MEDIA_PIPELINE_API_KEY=\xff\xfe\x00bin\n")
    result = check_config(path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(".env: is not UTF-8 text"), result.stderr
    assert "Traceback" not in result.stderr


def test_a_config_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"paths:\n  inbox: /srv/\xff\xfe\n")
    result = check_config(path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("config: is not UTF-8 text"), result.stderr


def test_a_folder_over_an_adopted_reference_folder_is_refused(tmp_path: Path) -> None:
    # An inbox pointed at (or around) a library adopted read-only would be emptied
    # into batches and duplicates_dir: the reference is never one of the folders.
    from pipeline.db import open_database
    from pipeline.models import LibraryRoot, RootKind, database_proxy

    reference = tmp_path / "old-library"
    (reference / "2019").mkdir(parents=True)
    path = write(tmp_path)
    database = cfg.load(path, environ={}).settings.database.path
    db = open_database(database)
    try:
        LibraryRoot.create(path=str(reference), kind=RootKind.REFERENCE)
    finally:
        db.close()
        database_proxy.initialize(None)
    assert cfg.load(path, environ={})  # the configured folders are elsewhere
    for inbox in (reference, reference / "2019", tmp_path):
        write(tmp_path, paths={"inbox": str(inbox)})
        found = [p for p in problems(path) if "reference" in p]
        assert found and found[0].startswith("paths.inbox: overlaps"), found
    result = check_config(path)
    assert result.returncode == 2 and "read-only reference" in result.stderr


def test_a_short_dbui_password_is_refused_at_start(tmp_path: Path) -> None:
    """issue 26.2: a /dbui password is guessed like a key; one character was taken."""
    path = write(tmp_path, dbui={"enabled": True, "password": "p" * 15})
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(
        "dbui.password: must be at least 16 characters (got 15 characters)"
    ), result.stderr
    assert "p" * 15 not in result.stderr
    write(tmp_path, dbui={"enabled": True, "password": "p" * 16})
    assert cfg.load(path, environ={}).settings.dbui.password == "p" * 16
