"""Config errors name the key; loading order, secrets, paths, masking, atomic save."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from daemon import config as cfg
from daemon.cli import main
from tests.conftest import run_as_nobody


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    path = write(tmp_path / "c.yaml", text)
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(path, environ={})
    return info.value.problems


def test_defaults_match_the_spec(tmp_path: Path) -> None:
    s = cfg.load(write(tmp_path / "c.yaml", ""), environ={}).settings
    assert s.server.port == 8080 and s.server.host == "127.0.0.1"
    assert s.watcher.ignore_patterns == [".*", "*.part", "*.crdownload", "*.tmp", "~*"]
    assert s.batch.max_size_gb == 10 and s.sort.template == "{year}/{month}/{day}"
    assert s.syncthing.enabled is False and s.dedup.near_duplicate_distance == 6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  port: lots\n", "server.port: "),
        ("server:\n  port: 70000\n", "server.port: "),
        ("batch:\n  max_size_gb: -1\n", "batch.max_size_gb: "),
        ("paths:\n  inbx: /x\n", "paths.inbx: unknown key"),
        ("colour: blue\n", "colour: unknown key"),
        ("sort:\n  template: '{year}/{week}'\n", "sort.template: unknown placeholder"),
        ("sort:\n  timezone: Mars/Olympus\n", "sort.timezone: unknown time zone"),
        ("syncthing:\n  url: ftp://x\n", "syncthing.url: must be an http"),
        ("logging:\n  level: LOUD\n", "logging.level: "),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    lines = problems(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith(expected)
    assert "(got " in lines[0]


def test_every_problem_reported_at_once(tmp_path: Path) -> None:
    lines = problems(
        tmp_path, "server:\n  port: x\nsystem:\n  max_parallel_fs_ops: 0\n"
    )
    assert [line.split(":")[0] for line in lines] == [
        "server.port",
        "system.max_parallel_fs_ops",
    ]


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.load(tmp_path / "nope.yaml", environ={})
    assert info.value.problems[0].startswith("config: file not found")
    assert problems(tmp_path, "paths: [unclosed\n")[0].startswith(
        "config: invalid YAML at line"
    )
    assert "mapping" in problems(tmp_path, "- a\n- b\n")[0]


def test_secret_value_is_masked_in_errors(tmp_path: Path) -> None:
    lines = problems(tmp_path, "auth:\n  api_key: [hunter2-secret]\n")
    assert "hunter2" not in "\n".join(lines)


def test_loading_order(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "server:\n  port: 1001\n")
    b = write(tmp_path / "b.yaml", "server:\n  port: 1002\n")
    env = {cfg.CONFIG_ENV: str(b)}
    assert cfg.load(a, environ=env).settings.server.port == 1001
    assert cfg.load(None, environ=env).path == b
    assert cfg.resolve_path(None, {}) == Path("/etc/media-pipeline/config.yaml")


def test_secrets_from_env_and_dotenv(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "")
    write(tmp_path / ".env", "# comment\nexport MEDIA_PIPELINE_API_KEY='from-dotenv'\n")
    s = cfg.load(path, environ={"SYNCTHING_API_KEY": "st-key"}).settings
    assert s.syncthing.api_key == "st-key" and s.auth.api_key == "from-dotenv"
    s = cfg.load(
        path, environ={"MEDIA_PIPELINE_API_KEY": "env-wins-over-dotenv"}
    ).settings
    assert s.auth.api_key == "env-wins-over-dotenv"
    explicit = write(tmp_path / "c.yaml", "auth:\n  api_key: in-file\n")
    assert cfg.load(explicit, environ={}).settings.auth.api_key == "in-file"


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = write(
        tmp_path / "etc" / "c.yaml",
        "paths:\n  inbox: ../in\ndatabase:\n  path: db.sqlite\n",
    )
    s = cfg.load(path, environ={}).settings
    assert s.paths.inbox == tmp_path / "in"
    assert s.database.path == tmp_path / "etc" / "db.sqlite"


def test_unwritable_folder_names_the_key() -> None:
    """A folder the daemon's user cannot write: exit 2 naming the key (run as nobody)."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="mp-perm-"))
    try:
        root.chmod(0o755)
        locked = root / "locked"
        locked.mkdir(mode=0o555)
        locked.chmod(0o555)
        conf = root / "c.yaml"
        paths = {k: str(root / "ok" / k) for k in cfg.PathsSettings.model_fields}
        paths["inbox"] = str(locked / "inbox")
        conf.write_text(
            yaml.safe_dump({"paths": paths, "database": {"path": str(root / "ok/db")}})
        )
        (root / "ok").mkdir(mode=0o777)
        (root / "ok").chmod(0o777)
        cmd = [sys.executable, "-m", "daemon", "check-config", "-c", str(conf)]
        proc = run_as_nobody(cmd, 60)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("paths.inbox: cannot create or write folder")
        assert "Traceback" not in proc.stderr
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_uncreatable_folder_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    s = cfg.validate({"paths": {"sorted_dir": str(blocker / "sorted")}})
    s.paths.inbox = tmp_path / "inbox"
    with pytest.raises(cfg.ConfigError) as info:
        cfg.ensure_folders(s)
    assert [p.split(":")[0] for p in info.value.problems if "sorted" in p] == [
        "paths.sorted_dir"
    ]


def test_mask_and_unmask(tmp_path: Path) -> None:
    raw = {"auth": {"api_key": "k" * 10, "enabled": True}, "dbui": {"password": ""}}
    masked = cfg.mask(raw)
    assert masked["auth"]["api_key"] == cfg.MASK and raw["auth"]["api_key"] == "k" * 10
    assert masked["dbui"]["password"] == ""
    patch = cfg.unmask_patch({"auth": {"api_key": cfg.MASK, "enabled": False}}, raw)
    assert cfg.deep_merge(raw, patch)["auth"] == {"api_key": "k" * 10, "enabled": False}


def test_save_atomic_round_trip_keeps_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "server:\n  port: 1\n")
    path.chmod(0o600)
    cfg.save_atomic(path, {"server": {"port": 2}})
    assert yaml.safe_load(path.read_text()) == {"server": {"port": 2}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["c.yaml"]


def test_changed_and_restart_keys() -> None:
    keys = cfg.changed_keys({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3}, "d": 4})
    assert keys == ["a.c", "d"]
    assert cfg.restart_required(["server.port", "dedup.near_duplicate_distance"]) == [
        "server.port"
    ]


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "good.yaml", f"paths:\n  inbox: {tmp_path}/in\n")
    good.write_text(
        yaml.safe_dump(
            {
                "paths": {k: str(tmp_path / k) for k in cfg.PathsSettings.model_fields},
                "database": {"path": str(tmp_path / "db.sqlite")},
            }
        )
    )
    assert main(["check-config", "-c", str(good)]) == 0
    assert capsys.readouterr().out.strip() == "config OK"
    bad = write(tmp_path / "bad.yaml", "server:\n  port: x\n")
    with pytest.raises(SystemExit) as info:
        main(["check-config", "-c", str(bad)])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("server.port: ")


def test_check_config_never_tracebacks(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "paths: 12\n")
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("paths: ")


def test_all_keys_lists_leaves() -> None:
    keys = cfg.all_keys()
    assert (
        "paths.inbox" in keys and "syncthing.device_ids" in keys and "paths" not in keys
    )
