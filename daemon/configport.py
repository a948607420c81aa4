"""GET/PUT /api/config for the web layer: masked reads, validated atomic audited writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from daemon import config as cfg
from daemon.logs import add_secret
from pipeline.context import Context
from pipeline.models import ConfigChange


class FileConfigPort:
    """The config file behind the API; live settings are updated in place."""

    def __init__(
        self,
        loaded: cfg.LoadedConfig,
        ctx: Context,
        on_change: Callable[[list[str]], None] | None = None,
    ):
        """`on_change(keys)` runs after live keys were applied (the service reacts)."""
        self.loaded = loaded
        self.ctx = ctx
        self.on_change = on_change
        self._lock = threading.Lock()

    def masked(self) -> dict[str, Any]:
        return cfg.mask(cfg.settings_dict(self.loaded.settings))

    def update(self, patch: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Merge, validate, save atomically, audit; ValueError(lines) when invalid."""
        with self._lock:
            raw = self.loaded.raw
            merged = cfg.deep_merge(raw, cfg.unmask_patch(patch, raw))
            try:
                refused = cfg.config_checks.patch_problems(patch, self.loaded.settings)
                if refused:
                    raise cfg.ConfigError(refused)
                new = cfg.build(merged, self.loaded.path)
            except cfg.ConfigError as exc:
                raise ValueError(exc.problems) from None
            old_view = cfg.mask(cfg.settings_dict(self.loaded.settings))
            new_view = cfg.mask(cfg.settings_dict(new))
            keys = cfg.changed_keys(
                cfg.settings_dict(self.loaded.settings), cfg.settings_dict(new)
            )
            cfg.save_atomic(self.loaded.path, merged)
            self._audit(keys, old_view, new_view)
            restart = cfg.restart_required(keys)
            self._apply_live(new, restart, keys)
            self.loaded.raw = merged
        live = [k for k in keys if k not in restart]
        if live and self.on_change is not None:
            self.on_change(live)
        return new_view, restart

    def _audit(self, keys: list[str], old: dict[str, Any], new: dict[str, Any]) -> None:
        self.ctx.writer.call(
            lambda: ConfigChange.create(
                keys=json.dumps(keys),
                old=json.dumps(old),
                new=json.dumps(new),
                source="api",
            )
        )

    def _apply_live(
        self, new: cfg.Settings, restart: list[str], keys: list[str]
    ) -> None:
        """Copy every changed key that applies at once into the running settings."""
        secrets = (new.syncthing.api_key, new.auth.api_key, new.dbui.password)
        for secret in (*secrets, *new.notify.urls):
            add_secret(secret)
        for key in keys:
            if key in restart:
                continue
            section, name = key.split(".", 1)
            setattr(
                getattr(self.loaded.settings, section),
                name,
                getattr(getattr(new, section), name),
            )
