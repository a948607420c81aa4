"""Configuration: loading (YAML, environment, `.env`), validation errors, masking, saving.

Every key is declared once, in `pipeline.settings.Settings` (`Settings`,
`PathsSettings` and `all_keys` stay importable from here).
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from daemon import config_checks
from pipeline.fsops import write_atomic
from pipeline.settings import PathsSettings, Settings
from pipeline.settings import all_keys as all_keys  # re-exported: docs tests use it

DEFAULT_CONFIG_PATH = Path("/etc/media-pipeline/config.yaml")
CONFIG_ENV = "MEDIA_PIPELINE_CONFIG"
MASK = "********"
# (section, key, environment variable): secrets that may come from the environment.
SECRET_ENV = (
    ("syncthing", "api_key", "SYNCTHING_API_KEY"),
    ("auth", "api_key", "MEDIA_PIPELINE_API_KEY"),
)
SECRET_KEYS = (
    ("syncthing", "api_key"),
    ("auth", "api_key"),
    ("dbui", "password"),
    ("notify", "urls"),
)


class ConfigError(Exception):
    """Invalid or unreadable configuration; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class LoadedConfig(BaseModel):
    """Validated settings plus where they came from (needed to save and resolve)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    settings: Settings
    path: Path
    raw: dict[str, Any]


def resolve_path(
    cli_path: str | os.PathLike[str] | None, environ: Mapping[str, str]
) -> Path:
    """`-c` first, then $MEDIA_PIPELINE_CONFIG, then /etc/media-pipeline/config.yaml."""
    if cli_path:
        return Path(cli_path)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments, blanks and `export ` prefixes allowed."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError([f".env: is not UTF-8 text (got {str(path)!r})"]) from None
    except OSError as exc:
        raise ConfigError(
            [f".env: cannot read: {exc.strerror} (got {str(path)!r})"]
        ) from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        values[key.strip()] = value.strip().strip("'\"")
    return values


def _format_value(loc: tuple[Any, ...], value: Any) -> str:
    if tuple(str(p) for p in loc[:2]) in SECRET_KEYS and value:
        return MASK
    text = repr(value) if not isinstance(value, dict) else "{...}"
    return text if len(text) <= 80 else text[:77] + "..."


def format_errors(exc: ValidationError) -> list[str]:
    """One `key.path: what is wrong (got VALUE)` line per pydantic error."""
    lines = []
    for err in exc.errors():
        loc, value = tuple(err["loc"]), err["input"]
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        # A section-level check names its key as "key: problem"; move it into the path.
        named = re.match(r"^([a-z_]+): (.*)$", message)
        if named and isinstance(value, dict):
            loc, message = (*loc, named.group(1)), named.group(2)
            value = value.get(named.group(1), "")
        key = ".".join(str(p) for p in loc)
        lines.append(f"{key}: {message} (got {_format_value(loc, value)})")
    return lines


def validate(raw: Mapping[str, Any]) -> Settings:
    """Validate a raw mapping; raises ConfigError with one line per problem."""
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_errors(exc)) from None


def read_raw(path: Path) -> dict[str, Any]:
    """The YAML mapping in `path`; ConfigError for a missing, unreadable or non-map file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config: file not found (got {str(path)!r})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config: is not UTF-8 text (got {str(path)!r})"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"config: cannot read: {exc.strerror} (got {str(path)!r})"]
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "unknown line"
        raise ConfigError(
            [f"config: invalid YAML at {where} (got {str(path)!r})"]
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            [f"config: must be a mapping of sections (got {type(data).__name__})"]
        )
    return data


def _apply_secrets(
    settings: Settings, environ: Mapping[str, str], dotenv: dict[str, str]
) -> None:
    for section, key, var in SECRET_ENV:
        sec = getattr(settings, section)
        if not getattr(sec, key):
            value = environ.get(var) or dotenv.get(var) or ""
            setattr(sec, key, value)


def _resolve_paths(settings: Settings, base: Path) -> None:
    for name in PathsSettings.model_fields:
        value = getattr(settings.paths, name)
        setattr(settings.paths, name, (base / value.expanduser()).resolve())
    settings.database.path = (base / settings.database.path.expanduser()).resolve()


def build(
    raw: Mapping[str, Any], path: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate `raw`, fill secrets from the environment/.env, resolve relative paths."""
    environ = os.environ if environ is None else environ
    settings = validate(raw)
    _apply_secrets(settings, environ, read_dotenv(path.parent / ".env"))
    _resolve_paths(settings, path.parent.resolve())
    found = config_checks.problems(settings)
    if found:
        raise ConfigError(found)
    return settings


def load(
    cli_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Find, read and validate the config; raises ConfigError (never a traceback)."""
    environ = os.environ if environ is None else environ
    path = resolve_path(cli_path, environ)
    raw = read_raw(path)
    return LoadedConfig(settings=build(raw, path, environ), path=path, raw=raw)


def folder_keys(settings: Settings) -> dict[str, Path]:
    """Folders the daemon creates and writes, by config key."""
    folders = {
        f"paths.{name}": getattr(settings.paths, name)
        for name in PathsSettings.model_fields
    }
    folders["database.path"] = settings.database.path.parent
    return folders


def ensure_folders(settings: Settings) -> None:
    """Create every configured folder; ConfigError naming each key that cannot be used."""
    problems = []
    for key, folder in folder_keys(settings).items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(13, "Permission denied")
        except OSError as exc:
            reason = exc.strerror or str(exc)
            problems.append(
                f"{key}: cannot create or write folder: {reason} (got {str(folder)!r})"
            )
    if problems:
        raise ConfigError(problems)


def mask(data: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a config mapping with every non-empty secret replaced by MASK."""
    out = copy.deepcopy(dict(data))
    for section, key in SECRET_KEYS:
        sec = out.get(section)
        if isinstance(sec, dict) and sec.get(key):
            sec[key] = MASK
    return out


def settings_dict(settings: Settings) -> dict[str, Any]:
    """Settings as plain JSON-able data."""
    return settings.model_dump(mode="json")


def deep_merge(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`patch` merged into a copy of `base`; nested mappings merge, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in patch.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def unmask_patch(
    patch: Mapping[str, Any], current_raw: Mapping[str, Any]
) -> dict[str, Any]:
    """Drop secrets sent back as MASK so the stored secret is kept."""
    out = copy.deepcopy(dict(patch))
    for section, key in SECRET_KEYS:
        sec = out.get(section)
        if isinstance(sec, dict) and sec.get(key) == MASK:
            del sec[key]
    return out


def save_atomic(path: Path, raw: Mapping[str, Any]) -> None:
    """Write the config as YAML atomically, keeping the file's permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(dict(raw), sort_keys=False, default_flow_style=False)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    write_atomic(path, text, mode)


# Keys whose new value only takes effect after a restart (everything else is live).
RESTART_KEYS = (
    "paths.",
    "database.",
    "server.",
    "system.",
    "watcher.",
    "logging.",
    "dbui.",
    "syncthing.",
)


def changed_keys(
    old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = ""
) -> list[str]:
    """Dotted keys whose values differ between two config mappings."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            keys.extend(changed_keys(a, b, f"{prefix}{key}."))
        elif a != b:
            keys.append(f"{prefix}{key}")
    return keys


def restart_required(keys: list[str]) -> list[str]:
    """The subset of changed keys that apply only after a restart."""
    return [k for k in keys if any(k == p or k.startswith(p) for p in RESTART_KEYS)]
