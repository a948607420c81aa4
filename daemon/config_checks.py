"""Rules across keys that keep the daemon inside its own folders and its API closed.

Run on every config the daemon would use — at start, by `check-config` and for each
`PUT /api/config` — after secrets are filled in and paths resolved, so the key the
daemon would really use and the folder it would really touch are what is checked.
Each problem is a `key: what is wrong (got VALUE)` line.
"""

from __future__ import annotations

import ipaddress
import pwd
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.context import FOLDERS

MIN_KEY_LENGTH = 32
MIN_DBUI_PASSWORD_LENGTH = 16
MASK = "********"
# Nothing of the daemon's belongs anywhere in these trees.
SYSTEM_TREES = tuple(
    Path(p)
    for p in (
        "/etc",
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/boot",
        "/dev",
        "/proc",
        "/sys",
        "/run",
    )
)
# These hold other things side by side; a folder of the daemon may be below them,
# never one of them.
SYSTEM_FOLDERS = tuple(Path(p) for p in ("/", "/var", "/var/lib", "/home", "/root"))
PATH_KEYS = FOLDERS


def home_folders() -> set[Path]:
    """Every user's home folder (a folder of the daemon is never one of them)."""
    homes = set()
    for entry in pwd.getpwall():
        if entry.pw_dir and entry.pw_dir.startswith("/"):
            homes.add(Path(entry.pw_dir))
    return homes


def problems(settings: Any) -> list[str]:
    """Every cross-key problem of resolved settings (empty when they are fine)."""
    return [
        *folder_problems(settings),
        *database_problems(settings.database.path),
        *reference_problems(settings),
        *auth_problems(settings),
        *dbui_problems(settings),
    ]


def system_reason(folder: Path, homes: set[Path]) -> str | None:
    """Why `folder` may not be used by the daemon, or None."""
    for tree in SYSTEM_TREES:
        if folder == tree or folder.is_relative_to(tree):
            return f"is inside the system folder {tree}"
    if folder in SYSTEM_FOLDERS:
        return "is a system folder"
    if folder in homes:
        return "is a home folder itself; use a folder inside it"
    return None


def folder_problems(settings: Any) -> list[str]:
    homes = home_folders()
    folders = {name: Path(getattr(settings.paths, name)) for name in PATH_KEYS}
    lines = []
    for name, folder in folders.items():
        reason = system_reason(folder, homes)
        if reason:
            lines.append(f"paths.{name}: {reason} (got {str(folder)!r})")
    names = list(folders)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            fa, fb = folders[a], folders[b]
            if fa == fb or fa.is_relative_to(fb) or fb.is_relative_to(fa):
                lines.append(
                    f"paths.{b}: overlaps paths.{a} ({str(folders[a])!r}); "
                    f"each folder must be separate (got {str(fb)!r})"
                )
    db_folder = Path(settings.database.path).parent
    for tree in SYSTEM_TREES:
        if db_folder == tree or db_folder.is_relative_to(tree):
            lines.append(
                f"database.path: is inside the system folder {tree} "
                f"(got {str(settings.database.path)!r})"
            )
    return lines


def database_problems(path: Path) -> list[str]:
    """A database path that exists must be an SQLite database (or an empty file).

    Read through SQLite only: closing any plain descriptor of the running database
    would drop every POSIX lock this process holds on it, SQLite's included.
    """
    path = Path(path)
    shown = str(path)
    if path.is_dir():
        return [f"database.path: is a folder, not a database file (got {shown!r})"]
    if not path.exists():
        return []
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            return [
                "database.path: is an existing file that is not an SQLite database; "
                f"refusing to use or overwrite it (got {shown!r})"
            ]
        if "locked" in str(exc):
            return []
        return [f"database.path: cannot read: {exc} (got {shown!r})"]
    return []


def reference_roots(database: Path) -> list[Path]:
    """Folders adopted in place as read-only references, from the database if any."""
    path = Path(database)
    if not path.is_file():
        return []
    try:
        conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            rows = conn.execute(
                "SELECT path FROM library_roots WHERE kind = 'reference'"
            ).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []  # no such table yet (or not readable: database_problems says so)
    return [Path(row[0]) for row in rows]


def reference_problems(settings: Any) -> list[str]:
    """A folder of the daemon may not be in, or around, a read-only reference root.

    The daemon moves what is in its folders (the inbox is emptied into batches and
    duplicates_dir): pointed at an adopted reference library, it would take it apart.
    """
    lines = []
    roots = reference_roots(settings.database.path)
    for name in PATH_KEYS:
        folder = Path(getattr(settings.paths, name))
        for root in roots:
            if (
                folder == root
                or folder.is_relative_to(root)
                or root.is_relative_to(folder)
            ):
                lines.append(
                    f"paths.{name}: overlaps {str(root)!r}, adopted in place as a "
                    f"read-only reference folder (got {str(folder)!r})"
                )
    return lines


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def auth_problems(settings: Any) -> list[str]:
    auth, host = settings.auth, settings.server.host
    if not auth.enabled:
        if is_loopback_host(host):
            return []
        return [
            "auth.enabled: must be true when server.host is not a loopback address; "
            f"anyone on the network could use the API (got false, server.host {host!r})"
        ]
    if not auth.api_key:
        return [
            "auth.api_key: must be set when auth.enabled is true "
            "(or $MEDIA_PIPELINE_API_KEY) (got '')"
        ]
    if len(auth.api_key) < MIN_KEY_LENGTH:
        return [
            f"auth.api_key: must be at least {MIN_KEY_LENGTH} characters "
            f"(got {len(auth.api_key)} characters)"
        ]
    return []


def dbui_problems(settings: Any) -> list[str]:
    """A /dbui password is guessed at like an API key: a short one is refused."""
    password = settings.dbui.password
    if password and len(password) < MIN_DBUI_PASSWORD_LENGTH:
        return [
            f"dbui.password: must be at least {MIN_DBUI_PASSWORD_LENGTH} characters "
            f"(got {len(password)} characters)"
        ]
    return []


def patch_problems(patch: Mapping[str, Any], current: Any) -> list[str]:
    """Rules for a `PUT /api/config` body beyond what any config file must meet.

    A path sent over the API must be absolute (the caller cannot see what a relative
    one would resolve against), and a new `syncthing.url` needs the Syncthing key sent
    in clear: a masked key would otherwise be kept and sent to the new address.
    """
    lines = []
    paths = patch.get("paths")
    if isinstance(paths, Mapping):
        for name, value in paths.items():
            if isinstance(value, str) and not value.startswith("/"):
                lines.append(f"paths.{name}: must be an absolute path (got {value!r})")
    database = patch.get("database")
    if isinstance(database, Mapping):
        value = database.get("path")
        if isinstance(value, str) and not value.startswith("/"):
            lines.append(f"database.path: must be an absolute path (got {value!r})")
    syncthing = patch.get("syncthing")
    if isinstance(syncthing, Mapping) and "url" in syncthing:
        new_url = str(syncthing["url"]).rstrip("/")
        key = syncthing.get("api_key")
        clear = isinstance(key, str) and key not in ("", MASK)
        if new_url != current.syncthing.url and current.syncthing.api_key and not clear:
            lines.append(
                "syncthing.api_key: must be sent in clear with a new syncthing.url; "
                "the stored key is never sent to a new address (got "
                f"{'the mask' if key == MASK else 'no key'})"
            )
    return lines
