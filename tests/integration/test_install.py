"""scripts/install.sh into a temporary root, and the systemd unit checked by systemd."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
UNIT = REPO / "systemd" / "media-pipeline.service"
EXAMPLE_CONFIG = REPO / "config" / "config.example.yaml"
EXEC_START = (
    "/opt/media-pipeline/.venv/bin/media-pipeline run "
    "--config /etc/media-pipeline/config.yaml"
)
# Commands install.sh must not run when staging into a root other than /.
FORBIDDEN = ("useradd", "groupadd", "systemctl", "chown", "pip")
MAX_EXPOSURE = 2.5

Snapshot = dict[str, tuple[str, int, str]]


@pytest.fixture
def tripwires(tmp_path: Path) -> Path:
    """A PATH folder whose useradd/systemctl/... record any call and fail."""
    bin_dir = tmp_path / "tripwire-bin"
    bin_dir.mkdir()
    calls = tmp_path / "tripwire-calls"
    for name in FORBIDDEN:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "{calls}"\nexit 1\n')
        stub.chmod(0o755)
    return bin_dir


def forbidden_calls(tripwires: Path) -> list[str]:
    calls = tripwires.parent / "tripwire-calls"
    return calls.read_text().splitlines() if calls.exists() else []


def run_install(
    *args: str | Path, tripwires: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "DESTDIR"}
    full_env.update(env or {})
    if tripwires is not None:
        full_env["PATH"] = f"{tripwires}{os.pathsep}{full_env['PATH']}"
    return subprocess.run(
        ["bash", str(INSTALL), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def install_ok(*args: str | Path, tripwires: Path | None = None) -> str:
    result = run_install(*args, tripwires=tripwires)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def snapshot(root: Path) -> Snapshot:
    """Every entry under root: type, permission bits, content hash or link target."""
    entries: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                kind, detail = "link", os.readlink(path)
            elif stat.S_ISDIR(info.st_mode):
                kind, detail = "dir", ""
            else:
                kind, detail = "file", hashlib.sha256(path.read_bytes()).hexdigest()
            entries[str(path.relative_to(root))] = (
                kind,
                stat.S_IMODE(info.st_mode),
                detail,
            )
    return entries


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_install_twice_into_temp_root(tmp_path: Path, tripwires: Path) -> None:
    root = tmp_path / "root"

    first = install_ok("--root", root, "--no-venv", tripwires=tripwires)

    assert "Skipping user creation" in first
    assert "Skipping systemctl" in first
    for folder, expected_mode in {
        "etc/media-pipeline": 0o750,
        "var/lib/media-pipeline": 0o750,
        "var/lib/media-pipeline/tmp": 0o750,
        "var/log/media-pipeline": 0o750,
        "srv/media": 0o750,
        "srv/media/inbox": 0o2770,
        "srv/media/duplicates": 0o750,
        "srv/media/batches": 0o750,
        "srv/media/sync": 0o2770,
        "srv/media/sorted": 0o750,
    }.items():
        assert (root / folder).is_dir(), folder
        assert mode(root / folder) == expected_mode, folder
    config = root / "etc/media-pipeline/config.yaml"
    assert config.read_bytes() == EXAMPLE_CONFIG.read_bytes()
    assert mode(config) == 0o640
    unit = root / "etc/systemd/system/media-pipeline.service"
    assert unit.read_bytes() == UNIT.read_bytes()
    assert mode(unit) == 0o644
    assert not (root / "opt/media-pipeline/.venv").exists()

    edited = config.read_text() + "\n# edited by the administrator\n"
    config.write_text(edited)
    before = snapshot(root)
    second = install_ok("--root", root, "--no-venv", tripwires=tripwires)

    assert config.read_text() == edited
    assert snapshot(root) == before
    assert "never overwritten" in second
    assert forbidden_calls(tripwires) == []


def test_venv_created_and_command_linked(tmp_path: Path, tripwires: Path) -> None:
    root = tmp_path / "root"

    output = install_ok("--root", root, "--skip-pip", tripwires=tripwires)

    venv_python = root / "opt/media-pipeline/.venv/bin/python"
    assert os.access(venv_python, os.X_OK)
    link = root / "usr/local/bin/media-pipeline"
    assert os.readlink(link) == "/opt/media-pipeline/.venv/bin/media-pipeline"
    assert "skipping pip install" in output
    before = snapshot(root)

    again = install_ok("--root", root, "--skip-pip", tripwires=tripwires)

    assert "kept    /opt/media-pipeline/.venv" in again
    assert snapshot(root) == before
    assert forbidden_calls(tripwires) == []


def test_destdir_environment_sets_root(tmp_path: Path, tripwires: Path) -> None:
    root = tmp_path / "staged"

    result = run_install(
        "--no-venv", "--no-user", "--no-systemctl", env={"DESTDIR": str(root)}
    )

    assert result.returncode == 0, result.stderr
    assert (root / "etc/systemd/system/media-pipeline.service").is_file()


def test_replaced_unit_is_backed_up_and_folder_modes_kept(
    tmp_path: Path, tripwires: Path
) -> None:
    root = tmp_path / "root"
    install_ok("--root", root, "--no-venv", tripwires=tripwires)
    unit = root / "etc/systemd/system/media-pipeline.service"
    local_edit = unit.read_text() + "Nice=10\n"
    unit.write_text(local_edit)
    inbox = root / "srv/media/inbox"
    inbox.chmod(0o2775)

    output = install_ok("--root", root, "--no-venv", tripwires=tripwires)

    assert unit.read_bytes() == UNIT.read_bytes()
    assert unit.with_name("media-pipeline.service.bak").read_text() == local_edit
    assert "systemctl edit" in output
    assert mode(inbox) == 0o2775


def test_missing_example_config_fails_clearly(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "systemd").mkdir(parents=True)
    shutil.copy(UNIT, source / "systemd")
    root = tmp_path / "root"

    result = run_install("--root", root, "--source", source, "--no-venv")

    assert result.returncode == 1
    assert "config/config.example.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert not root.exists()


def test_missing_pyproject_fails_before_touching_anything(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "systemd").mkdir(parents=True)
    (source / "config").mkdir()
    shutil.copy(UNIT, source / "systemd")
    (source / "config/config.example.yaml").write_text("paths: {}\n")
    root = tmp_path / "root"

    result = run_install("--root", root, "--source", source)

    assert result.returncode == 1
    assert "pyproject.toml" in result.stderr
    assert not root.exists()


@pytest.mark.parametrize("args", [["--bogus"], ["--root"], ["--source", ""]])
def test_bad_arguments_exit_2_with_usage(args: list[str]) -> None:
    result = run_install(*args)

    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_help() -> None:
    result = run_install("--help")

    assert result.returncode == 0
    assert "--root DIR" in result.stdout
    assert "--no-systemctl" in result.stdout


# --- the unit file -------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd allows a key to repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "ms": 0.001}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert match and match.group(2) in units, f"unexpected time span {value!r}"
    return float(match.group(1)) * units[match.group(2)]


def test_unit_declares_the_contract() -> None:
    service = parse_unit(UNIT.read_text())["Service"]

    def one(key: str) -> str:
        values = service.get(key, [])
        assert len(values) == 1, f"{key}= given {len(values)} times"
        return values[0]

    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("ExecStart") == EXEC_START
    assert one("User") == one("Group") == "media-pipeline"
    assert one("Restart") == "on-failure"
    assert one("KillMode") in {"mixed", "control-group"}
    assert 10 < seconds(one("TimeoutStopSec")) <= 30
    watchdog = seconds(one("WatchdogSec"))
    assert watchdog >= 10
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") == "read-only"
    writable = {p.lstrip("-") for v in service["ReadWritePaths"] for p in v.split()}
    assert {
        "/srv/media",
        "/var/lib/media-pipeline",
        "/var/log/media-pipeline",
    } <= writable
    assert set(one("RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
    }
    assert "@system-service" in service["SystemCallFilter"]
    for flag in (
        "NoNewPrivileges",
        "PrivateTmp",
        "PrivateDevices",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "LockPersonality",
    ):
        assert one(flag) == "yes", flag
    assert re.fullmatch(r"0[0-7]{3}", one("UMask"))


def verify_problems(unit_text: str, tmp_path: Path) -> list[str]:
    """Run ``systemd-analyze verify`` on the unit with ExecStart's program stubbed.

    The real program lives in the venv the test does not build, and verify reports a
    missing executable as an error; everything else (unknown keys, bad values) is
    reported as a warning with exit 0, so every line naming the unit counts.
    """
    work = tmp_path / "verify"
    work.mkdir()
    stub = work / "media-pipeline"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    program = EXEC_START.split()[0]
    assert program in unit_text
    unit = work / "media-pipeline.service"
    unit.write_text(unit_text.replace(program, str(stub)))
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if "media-pipeline" in line]
    if result.returncode != 0:
        problems.append(f"systemd-analyze verify exited {result.returncode}")
    return problems


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify_problems(UNIT.read_text(), tmp_path) == []


@pytest.mark.parametrize(
    "bad_line",
    ["Bogus=1", "ProtectSystem=sometimes", "RestrictAddressFamilies=AF_NOPE"],
)
def test_verify_check_catches_unit_errors(tmp_path: Path, bad_line: str) -> None:
    good = UNIT.read_text()
    text = good.replace("\n[Service]\n", f"\n[Service]\n{bad_line}\n", 1)
    assert text != good

    problems = verify_problems(text, tmp_path)

    assert problems != []
    assert not any("outside of section" in line for line in problems)


def test_unit_exposure_score_stays_low(tmp_path: Path) -> None:
    unit = tmp_path / "media-pipeline.service"
    shutil.copy(UNIT, unit)

    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
