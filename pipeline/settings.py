"""The settings schema: every configuration key, its type, default and limits.

Declared once (pydantic, `extra="forbid"`); stages read it as `ctx.settings`. Loading
(YAML, environment, `.env`), masking and saving live in `daemon/config.py`;
docs/CONFIG.md and config/config.example.yaml are checked against it by
tests/test_docs.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TEMPLATE_FIELDS = {"year", "month", "day", "kind", "camera"}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathsSettings(Section):
    inbox: Path = Path("/srv/media/inbox")
    duplicates_dir: Path = Path("/srv/media/duplicates")
    batch_dir: Path = Path("/srv/media/batches")
    sync_dir: Path = Path("/srv/media/sync")
    sorted_dir: Path = Path("/srv/media/sorted")
    temp_dir: Path = Path("/var/lib/media-pipeline/tmp")
    log_dir: Path = Path("/var/log/media-pipeline")


class DatabaseSettings(Section):
    path: Path = Path("/var/lib/media-pipeline/db.sqlite")
    busy_timeout_ms: int = Field(10_000, ge=0)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    allowed_hosts: list[str] = Field(default_factory=list)
    trusted_proxies: list[str] = Field(default_factory=list)
    public_url: str = ""

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"\[?[A-Za-z0-9._:-]+\]?", name) or name == "*":
                raise ValueError(f"not a host name or address: {name!r}")
        return [name.lower() for name in value]

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or network: {entry!r}") from None
        return value


class SystemSettings(Section):
    max_parallel_fs_ops: int = Field(4, ge=1, le=64)
    queue_size: int = Field(1000, ge=1)
    stall_timeout_seconds: float = Field(1800, gt=0)


class WatcherSettings(Section):
    enabled: bool = True
    settle_seconds: float = Field(2.0, ge=0)
    rescan_interval_seconds: float = Field(600, gt=0)
    ignore_patterns: list[str] = Field(
        default_factory=lambda: [".*", "*.part", "*.crdownload", "*.tmp", "~*"]
    )


class DedupSettings(Section):
    near_duplicate_distance: int = Field(6, ge=0, le=64)


class BatchSettings(Section):
    max_size_gb: float = Field(10, gt=0)
    max_age_seconds: float = Field(3600, ge=0)
    auto_create: bool = True


class SyncthingSettings(Section):
    enabled: bool = False
    url: str = "http://127.0.0.1:8384"
    api_key: str = ""
    folder_id: str = "media"
    device_ids: list[str] = Field(default_factory=list)
    poll_interval_seconds: float = Field(30, gt=0)
    timeout_seconds: float = Field(10, gt=0)
    auto_start: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class SortSettings(Section):
    auto: bool = True
    template: str = "{year}/{month}/{day}"
    timezone: str = ""
    dry_run: bool = False

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        fields = set(re.findall(r"{([^{}]*)}", value))
        unknown = fields - TEMPLATE_FIELDS
        if unknown:
            raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}")
        if value.startswith("/") or ".." in Path(value).parts:
            raise ValueError("must be a relative path inside sorted_dir")
        try:  # the sort renders it exactly so; "x{" or "{}" must fail here, not there
            value.format(
                year="2024", month="03", day="07", kind="photos", camera="camera"
            )
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            raise ValueError(f"does not render: {exc}") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError("unknown time zone") from exc
        return value


class CleanupSettings(Section):
    interval_seconds: float = Field(3600, gt=0)
    temp_max_age_hours: float = Field(24, ge=0)
    log_retention_days: float = Field(14, ge=0)
    batch_retention_days: float = Field(30, ge=0)
    job_retention_days: float = Field(30, ge=0)
    min_folder_age_seconds: float = Field(3600, ge=0)


class IntakeSettings(Section):
    media_only: bool = True


class LibrarySettings(Section):
    verify_interval_days: float = Field(30, ge=0)
    verify_rate_mb_per_s: float = Field(50, ge=0)


class RetrySettings(Section):
    max_attempts: int = Field(5, ge=0, le=100)
    backoff_seconds: float = Field(60, gt=0, le=86_400)


class AuthSettings(Section):
    enabled: bool = False
    api_key: str = ""


class DbuiSettings(Section):
    enabled: bool = False
    password: str = ""

    @model_validator(mode="after")
    def _password_needed(self) -> DbuiSettings:
        if self.enabled and not self.password:
            raise ValueError("password: must be set when dbui.enabled is true")
        return self


NOTIFY_EVENTS = ("error", "library_check", "sync_stalled", "disk_low", "recovered")


class NotifySettings(Section):
    urls: list[str] = Field(default_factory=list)
    events: list[str] = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    digest_minutes: float = Field(15, gt=0)
    sync_stalled_hours: float = Field(24, gt=0)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(NOTIFY_EVENTS))
        if unknown:
            raise ValueError(f"unknown event {unknown[0]!r}")
        return value

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^[a-z][a-z0-9+.-]*://\S+$", url):
                # The URL itself is a secret: never echoed back.
                raise ValueError("not an Apprise URL (scheme://...)")
        return value


class LoggingSettings(Section):
    level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    rotation_mb: float = Field(10, gt=0)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Settings(Section):
    paths: PathsSettings = Field(default_factory=PathsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    system: SystemSettings = Field(default_factory=SystemSettings)
    watcher: WatcherSettings = Field(default_factory=WatcherSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    syncthing: SyncthingSettings = Field(default_factory=SyncthingSettings)
    sort: SortSettings = Field(default_factory=SortSettings)
    cleanup: CleanupSettings = Field(default_factory=CleanupSettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    library: LibrarySettings = Field(default_factory=LibrarySettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    dbui: DbuiSettings = Field(default_factory=DbuiSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)


def all_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """Every leaf key as a dotted path, e.g. `paths.inbox`."""
    keys: list[str] = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(all_keys(ann, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys
