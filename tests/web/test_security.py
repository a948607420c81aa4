"""Attacks on the HTTP face, performed against the real app on a real uvicorn server.

Each test plays a hostile neighbour (docs/SECURITY.md): a web page in the owner's
browser (DNS rebinding, cross-site posts, framing), a LAN client guessing keys.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from pipeline.models import Job
from web.app import create_app
from web.guard import CSP

sys.path.insert(0, str(Path(__file__).parent))
from live import serve_app  # noqa: E402

KEY = "K" * 40


@contextmanager
def serve(svc: Any) -> Iterator[httpx.Client]:
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and body["code"] == code, body


def raw_request(base_url: str, request: bytes) -> bytes:
    """Send bytes as they are (no Host header added) and return the whole answer."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_dns_rebinding_a_foreign_host_is_refused(service: Any) -> None:
    svc = service(server={"allowed_hosts": ["nas.lan", "192.168.1.20"]})
    (svc.ctx.roots.inbox / "empty").mkdir()
    svc.ctx.settings.cleanup.min_folder_age_seconds = 0
    with serve(svc) as client:
        port = urlsplit(str(client.base_url)).port
        # The attacker's page, its name now resolving to 127.0.0.1, reads and acts.
        evil = {"Host": f"evil.example:{port}"}
        refused(client.get("/api/dashboard", headers=evil), 400, "VALIDATION_ERROR")
        refused(client.get("/api/config", headers=evil), 400, "VALIDATION_ERROR")
        refused(client.get("/dashboard", headers=evil), 400, "VALIDATION_ERROR")
        run = client.post("/api/cleanup/run", json={}, headers=evil)
        refused(run, 400, "VALIDATION_ERROR")
        assert (svc.ctx.roots.inbox / "empty").is_dir()  # nothing was done
        for host in ("localhost.evil.example", "127.0.0.1.evil.example", "nas.lan.x"):
            answer = client.get("/api/dashboard", headers={"Host": host})
            refused(answer, 400, "VALIDATION_ERROR")
        # The names the owner uses are served.
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            "NAS.lan",
            f"nas.lan:{port}",
            "192.168.1.20",
        ):
            answer = client.get("/api/dashboard", headers={"Host": host})
            assert answer.status_code == 200, (host, answer.text)
        # HTTP/1.0 without any Host header.
        answer = raw_request(str(client.base_url), b"GET /api/config HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        assert b"VALIDATION_ERROR" in answer and b"api_key" not in answer


def test_a_cross_site_form_post_cannot_start_a_job(service: Any) -> None:
    svc = service()
    config_before = svc.loaded.path.read_text()
    with serve(svc) as client:
        # What a hostile page can send without a CORS preflight.
        for headers, body in (
            ({"Content-Type": "text/plain"}, b'{"dry_run": false}'),
            ({"Content-Type": "application/x-www-form-urlencoded"}, b"a=b"),
            ({"Content-Type": "multipart/form-data; boundary=x"}, b"--x--\r\n"),
            ({}, b""),  # fetch(url, {method: "POST", mode: "no-cors"})
        ):
            for path in ("/api/dedup/start", "/api/sort/start", "/api/batch/create"):
                answer = client.post(path, content=body, headers=headers)
                refused(answer, 415, "VALIDATION_ERROR")
                assert "application/json" in answer.json()["message"]
        put = client.put(
            "/api/config",
            content=b'{"paths": {"temp_dir": "/tmp/elsewhere"}}',
            headers={"Content-Type": "text/plain"},
        )
        refused(put, 415, "VALIDATION_ERROR")
        assert Job.select().count() == 0
        assert svc.loaded.path.read_text() == config_before
        # The same requests with the JSON type (which a foreign page cannot send
        # without a preflight nobody answers) work.
        ok = client.post(
            "/api/dedup/start",
            content=b"{}",
            headers={"Content-Type": "Application/JSON; charset=utf-8"},
        )
        assert ok.status_code == 202, ok.text
    assert Job.select().count() == 1


def test_every_answer_carries_the_security_headers(service: Any) -> None:
    svc = service(auth={"enabled": True, "api_key": KEY})
    with serve(svc) as client:
        answers = {
            "page": client.get("/dashboard"),
            "script": client.get("/static/app.js"),
            "api": client.get("/api/dashboard", headers={"X-API-Key": KEY}),
            "401": client.get("/api/dashboard"),
            "404": client.get("/api/nope", headers={"X-API-Key": KEY}),
            "400 host": client.get("/health", headers={"Host": "evil.example"}),
            "415": client.post("/api/dedup/start", headers={"X-API-Key": KEY}),
            "health": client.get("/health"),
        }
    for what, answer in answers.items():
        headers = answer.headers
        assert headers.get_list("content-security-policy") == [CSP], what
        assert headers.get_list("x-frame-options") == ["DENY"], what
        assert headers.get_list("x-content-type-options") == ["nosniff"], what
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP


def test_the_dashboard_has_nothing_the_policy_would_block() -> None:
    """No inline script or style, no style attributes, no event-handler attributes."""
    import re

    web = Path(__file__).resolve().parents[2] / "web"
    for page in (web / "templates").rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", html, re.I):
            assert "src=" in tag, (page.name, tag)
        assert not re.search(r"<style\b", html, re.I), page.name
        assert not re.search(r"\sstyle\s*=", html, re.I), page.name
        assert not re.search(r"\son[a-z]+\s*=", html, re.I), page.name
    for script in (web / "static").rglob("*.js"):
        if "vendor" in script.parts:
            continue
        code = script.read_text(encoding="utf-8")
        assert "eval(" not in code and "new Function" not in code, script.name
        assert 'setAttribute("style"' not in code, script.name


def test_with_auth_on_an_empty_key_opens_nothing(service: Any) -> None:
    """The middleware refuses everything when the key is empty (config refuses it too)."""
    svc = service()
    svc.settings.auth.enabled = True  # as a config edited behind our back would be
    assert svc.settings.auth.api_key == ""
    with serve(svc) as client:
        for headers in ({}, {"X-API-Key": ""}, {"Authorization": "Bearer"}):
            refused(client.get("/api/files", headers=headers), 401, "UNAUTHORIZED")
            refused(client.get("/api/config", headers=headers), 401, "UNAUTHORIZED")
        assert client.get("/health").status_code == 200


def _put_refused(client: httpx.Client, patch: dict[str, Any], key: str) -> str:
    answer = client.put("/api/config", json=patch)
    refused(answer, 400, "VALIDATION_ERROR")
    message = answer.json()["message"]
    assert message.startswith(key), message
    return message


def test_the_config_api_cannot_aim_the_daemon_at_other_folders(
    service: Any, tmp_path: Path
) -> None:
    svc = service()
    before = svc.loaded.path.read_text()
    temp_before = svc.settings.paths.temp_dir
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("my notes, not a database\n")
    with serve(svc) as client:
        for folder in ("/etc", "/etc/cron.d", "/", "/usr/lib", "/var/lib", "/root"):
            _put_refused(client, {"paths": {"temp_dir": folder}}, "paths.temp_dir")
        _put_refused(client, {"paths": {"log_dir": "/home"}}, "paths.log_dir")
        _put_refused(client, {"paths": {"temp_dir": "tmp"}}, "paths.temp_dir")
        _put_refused(client, {"paths": {"inbox": "~/in"}}, "paths.inbox")
        inbox = str(svc.settings.paths.inbox)
        _put_refused(client, {"paths": {"temp_dir": inbox}}, "paths.temp_dir")
        _put_refused(
            client, {"paths": {"sorted_dir": inbox + "/sorted"}}, "paths.sorted_dir"
        )
        _put_refused(client, {"database": {"path": str(not_a_db)}}, "database.path")
        _put_refused(client, {"sort": {"template": "x{"}}, "sort.template")
        _put_refused(client, {"sort": {"template": "{}/{year}"}}, "sort.template")
    assert svc.loaded.path.read_text() == before
    assert svc.settings.paths.temp_dir == temp_before
    assert not_a_db.read_text() == "my notes, not a database\n"


def test_a_new_syncthing_url_never_gets_the_stored_key(service: Any) -> None:
    """The key is not sent to an address the caller picked without knowing the key."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from daemon.config import load
    from pipeline.syncthing import SyncthingClient

    secret = "st-secret-" + "9" * 20
    heard: list[str] = []

    class Listener(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            heard.append(self.headers.get("X-API-Key", ""))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"ping": "pong"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    attacker = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        svc = service(syncthing={"api_key": secret, "url": "http://127.0.0.1:9"})
        with serve(svc) as client:
            shown = client.get("/api/config").json()["data"]["config"]
            for patch in (
                {"syncthing": {"url": attacker}},
                {
                    "syncthing": {
                        "url": attacker,
                        "api_key": shown["syncthing"]["api_key"],
                    }
                },
                {"syncthing": {"url": attacker, "api_key": ""}},
            ):
                _put_refused(client, patch, "syncthing.api_key")
            # What the daemon would use after a restart still points where it did.
            saved = load(svc.loaded.path, environ={}).settings.syncthing
            assert saved.url == "http://127.0.0.1:9"
            st = SyncthingClient(saved.url, saved.api_key, retries=0, timeout=2)
            try:
                st.ping()
            except Exception:  # noqa: BLE001 - nothing listens there: expected
                pass
            finally:
                st.close()
            assert secret not in heard
            # The owner, who knows the key, may move Syncthing.
            moved = client.put(
                "/api/config", json={"syncthing": {"url": attacker, "api_key": secret}}
            )
            assert moved.status_code == 200, moved.text
            # Changing anything else keeps the masked key as before.
            same = client.put(
                "/api/config",
                json={"syncthing": {"api_key": "********", "timeout_seconds": 5}},
            )
            assert same.status_code == 200, same.text
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert load(svc.loaded.path, environ={}).settings.syncthing.api_key == secret


DBUI_PASSWORD = "db-pass-" + "7" * 12


def _forged_dbui_cookie(secret: str) -> str:
    """A session cookie saying `authorized`, signed the way Flask signs sessions."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    signer = Flask("forger")
    signer.secret_key = secret
    serializer = SecureCookieSessionInterface().get_signing_serializer(signer)
    assert serializer is not None
    return str(serializer.dumps({"authorized": True}))


def test_dbui_ignores_a_session_forged_with_the_public_key(service: Any) -> None:
    svc = service(dbui={"enabled": True, "password": DBUI_PASSWORD})
    with serve(svc) as client:
        # sqlite-web's built-in default, readable in its source by anyone.
        forged = _forged_dbui_cookie("sqlite-database-browser-0.1.0")
        client.cookies.set("sqlite_web_session", forged)
        for path in ("/dbui/", "/dbui/files/", "/dbui/query/?sql=select+1"):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code in (302, 303), (path, answer.status_code)
            assert "/login" in answer.headers["location"]


def test_dbui_login_is_throttled_and_constant_time(service: Any) -> None:
    svc = service(
        dbui={"enabled": True, "password": DBUI_PASSWORD},
        auth={"enabled": True, "api_key": KEY},
    )
    with serve(svc) as client:
        for n in range(20):
            wrong = client.post(
                "/dbui/login/", data={"password": f"guess-{n}"}, follow_redirects=False
            )
            assert wrong.status_code == 200 and "incorrect" in wrong.text
            assert client.get("/dbui/", follow_redirects=False).status_code == 302
        blocked = client.post("/dbui/login/", data={"password": "guess"})
        refused(blocked, 429, "RATE_LIMITED")
        # The API shares the count: this client is also blocked from guessing keys.
        wrong_key = client.get("/api/files", headers={"X-API-Key": "guess"})
        refused(wrong_key, 429, "RATE_LIMITED")
        # The owner with the right password is let in even now.
        login = client.post(
            "/dbui/login/", data={"password": DBUI_PASSWORD}, follow_redirects=True
        )
        assert login.status_code == 200 and "files" in login.text
        assert client.get("/dbui/", follow_redirects=False).status_code == 200


def test_dbui_cannot_write_attach_or_vacuum_into_a_file(
    service: Any, tmp_path: Path
) -> None:
    """issue 19.3: writes through sqlite-web fail in SQLite itself, not just the UI."""
    from pipeline.models import File
    from tests.conftest import add_file

    svc = service(dbui={"enabled": True, "password": DBUI_PASSWORD})
    file_id = add_file(svc, "a.jpg", "UNIQUE")
    evil_db = tmp_path / "evil.db"
    copy_db = tmp_path / "copy.db"
    with serve(svc) as client:
        login = client.post("/dbui/login/", data={"password": DBUI_PASSWORD})
        assert login.status_code in (200, 302, 303)
        assert client.get("/dbui/", follow_redirects=False).status_code == 200
        for sql in (
            f"DELETE FROM files WHERE id = {file_id}",
            "INSERT INTO files (original_path, rel_path, current_path, status)"
            " VALUES ('x', 'x', 'x', 'NEW')",
            "UPDATE files SET status = 'ERROR'",
            "DROP TABLE files",
            f"ATTACH '{evil_db}' AS evil",
            f"ATTACH '{evil_db}' AS evil; CREATE TABLE evil.t (x); INSERT INTO"
            " evil.t VALUES (1)",
            f"VACUUM INTO '{copy_db}'",
            "PRAGMA journal_mode = DELETE",
        ):
            client.post("/dbui/query/", data={"sql": sql})
        token = __import__("base64").urlsafe_b64encode(f"[{file_id}]".encode())
        client.post(f"/dbui/files/delete/{token.decode()}/", data={})
        # Reading still works.
        read = client.post("/dbui/query/", data={"sql": "SELECT rel_path FROM files"})
        assert read.status_code == 200 and "a.jpg" in read.text
    assert not evil_db.exists() and not copy_db.exists()
    rows = list(File.select().tuples())
    assert len(rows) == 1 and File.get_by_id(file_id).status == "UNIQUE"
    assert svc.settings.database.path.exists()


def test_dbui_opens_the_database_read_only_even_without_the_authorizer(
    service: Any, monkeypatch: Any
) -> None:
    """Each layer holds alone: with the authorizer off, SQLite's read-only open refuses."""
    from pipeline.models import File
    from tests.conftest import add_file
    from web import dbui

    monkeypatch.setattr(dbui, "guard_connection", lambda conn: None)
    svc = service(dbui={"enabled": True, "password": DBUI_PASSWORD})
    file_id = add_file(svc, "a.jpg", "UNIQUE")
    with serve(svc) as client:
        client.post("/dbui/login/", data={"password": DBUI_PASSWORD})
        for sql in (
            f"DELETE FROM files WHERE id = {file_id}",
            "UPDATE files SET status = 'ERROR'",
            "INSERT INTO files (original_path, rel_path, current_path, status)"
            " VALUES ('x', 'x', 'x', 'NEW')",
        ):
            answer = client.post("/dbui/query/", data={"sql": sql})
            assert "readonly" in answer.text, sql
    assert [r.status for r in File.select()] == ["UNIQUE"]


def test_the_authorizer_alone_refuses_writes_and_attached_files(tmp_path: Path) -> None:
    import sqlite3

    from web.dbui import guard_connection

    path = tmp_path / "rw.sqlite"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (x)")
    setup.execute("INSERT INTO t VALUES (1)")
    setup.commit()
    setup.close()
    conn = sqlite3.connect(path, isolation_level=None)  # writable on purpose
    guard_connection(conn)
    for sql in (
        "DELETE FROM t",
        "INSERT INTO t VALUES (2)",
        "UPDATE t SET x = 3",
        "CREATE TABLE u (y)",
        "DROP TABLE t",
        f"ATTACH '{tmp_path / 'a.db'}' AS a",
        f"VACUUM INTO '{tmp_path / 'v.db'}'",
        "PRAGMA user_version = 5",
        "PRAGMA wal_checkpoint",
    ):
        try:
            conn.execute(sql)
        except sqlite3.DatabaseError:
            continue
        raise AssertionError(f"allowed: {sql}")
    assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
    assert conn.execute("PRAGMA table_info(t)").fetchall()
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rw.sqlite"]


def test_an_unhandled_error_answers_the_envelope_with_the_headers(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from web.routes import dashboard as dashboard_routes

    def broken(*args: Any) -> Any:
        raise RuntimeError(f"database exploded; key {KEY}")

    monkeypatch.setattr(dashboard_routes, "dashboard", broken)
    svc = service(auth={"enabled": True, "api_key": KEY})
    with serve(svc) as client:
        answer = client.get("/api/dashboard", headers={"X-API-Key": KEY})
    assert answer.status_code == 500
    assert answer.json() == {
        "status": "error",
        "code": "INTERNAL_ERROR",
        "message": "internal error; see the daemon log",
    }
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert KEY not in answer.text
