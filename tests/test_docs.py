"""The reference docs and the example config stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon import config as cfg
from pipeline.batch import BUILDING
from pipeline.models import ALL_MODELS, BatchStatus, FileStatus, JobStatus, MoveState

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "config" / "config.example.yaml"
OWN_DOCS = ("ARCHITECTURE", "CONFIG", "SCHEMAS", "RELIABILITY", "SECURITY")
MISSING = object()


def text(name: str) -> str:
    return (DOCS / f"{name}.md").read_text(encoding="utf-8")


def example_raw() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def lookup(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


@pytest.mark.parametrize("key", cfg.all_keys())
def test_config_key_is_documented(key: str) -> None:
    assert f"`{key}`" in text("CONFIG"), f"docs/CONFIG.md does not describe `{key}`"


@pytest.mark.parametrize("key", cfg.all_keys())
def test_config_key_is_in_the_example(key: str) -> None:
    assert lookup(example_raw(), key) is not MISSING, f"{EXAMPLE.name} lacks {key}"


def test_example_loads_to_the_defaults() -> None:
    assert cfg.validate(example_raw()) == cfg.Settings()
    loaded = cfg.load(EXAMPLE, environ={})
    assert loaded.settings.syncthing.api_key == loaded.settings.auth.api_key == ""
    assert cfg.settings_dict(loaded.settings) == cfg.settings_dict(cfg.Settings())


def test_restart_keys_are_documented() -> None:
    doc = text("CONFIG")
    for prefix in cfg.RESTART_KEYS:
        shown = f"`{prefix}*`" if prefix.endswith(".") else f"`{prefix}`"
        assert shown in doc, f"docs/CONFIG.md does not list {shown} as restart-only"


def constants(holder: type) -> set[str]:
    return {v for k, v in vars(holder).items() if k.isupper() and isinstance(v, str)}


def test_every_state_and_table_is_in_schemas() -> None:
    doc = text("SCHEMAS")
    states = {*FileStatus.ALL, *BatchStatus.ALL, BUILDING}
    states |= constants(JobStatus) | constants(MoveState)
    tables = {model._meta.table_name for model in ALL_MODELS}
    missing = sorted(n for n in states | tables if f"`{n}`" not in doc)
    assert not missing, f"docs/SCHEMAS.md does not mention {missing}"


def linked_docs() -> list[tuple[str, Path]]:
    """(source, target) of README's docs/X.md links and of relative links in our docs."""
    links = []
    readme = ROOT / "README.md"
    if readme.exists():
        for target in re.findall(r"docs/[\w.-]+\.md", readme.read_text("utf-8")):
            links.append(("README.md", ROOT / target))
    for name in OWN_DOCS:
        for target in re.findall(r"\]\(([^):#\s]+)(?:#[^)]*)?\)", text(name)):
            links.append((f"docs/{name}.md", DOCS / target))
    return links


def test_linked_docs_exist() -> None:
    links = linked_docs()
    assert links, "no links found: the link pattern is broken"
    broken = [
        f"{src} -> {dst.relative_to(ROOT)}" for src, dst in links if not dst.exists()
    ]
    assert not broken, f"broken links: {broken}"


def test_the_folder_list_is_the_settings_paths() -> None:
    from pipeline.context import FOLDERS

    assert FOLDERS == tuple(cfg.PathsSettings.model_fields)
