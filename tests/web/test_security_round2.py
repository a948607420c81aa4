"""Security round 2 (issue 26): what a local user or a careless setting could still do.

Each attack runs against the real app on a real uvicorn server, as in
test_security.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import httpx

from web.auth import client_key

sys.path.insert(0, str(Path(__file__).parent))
from live import serve_app  # noqa: E402
from test_security import DBUI_PASSWORD, KEY, refused  # noqa: E402

from web.app import create_app  # noqa: E402


def _from(address: str, base_url: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=base_url, transport=transport, timeout=30)


def test_every_loopback_address_shares_one_wrong_key_budget(service: Any) -> None:
    svc = service(
        auth={"enabled": True, "api_key": KEY},
        dbui={"enabled": True, "password": DBUI_PASSWORD},
    )
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    sources = [f"127.0.0.{n}" for n in range(2, 12)]
    with serve_app(app) as url:
        answers = []
        for n in range(30):  # 3 guesses from each of 10 addresses, one budget of 20
            with _from(sources[n % 10], url) as client:
                answers.append(
                    client.get("/api/files", headers={"X-API-Key": f"g{n}"}).status_code
                )
        assert answers[:20] == [401] * 20 and answers[20:] == [429] * 10, answers
        # /dbui's login draws on the same budget, from yet another loopback address.
        with _from("127.0.0.11", url) as client:
            blocked = client.post("/dbui/login/", data={"password": "guess"})
            refused(blocked, 429, "RATE_LIMITED")
            # The owner's right key still gets in.
            ok = client.get("/api/files", headers={"X-API-Key": KEY})
            assert ok.status_code == 200


def test_dbui_login_guesses_from_many_loopback_addresses_share_a_budget(
    service: Any,
) -> None:
    svc = service(dbui={"enabled": True, "password": DBUI_PASSWORD})
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url:
        codes = []
        for n in range(21):
            with _from(f"127.0.0.{2 + n % 10}", url) as client:
                answer = client.post("/dbui/login/", data={"password": f"g{n}"})
                codes.append(answer.status_code)
        assert codes[:20] == [200] * 20 and codes[20] == 429, codes


def test_client_keys_group_loopback_ipv4_24_and_ipv6_64() -> None:
    loopback = {client_key(a) for a in ("127.0.0.1", "127.9.8.7", "::1")}
    assert loopback == {client_key("::ffff:127.0.0.5")} and len(loopback) == 1
    assert client_key("192.168.1.20") == client_key("192.168.1.250")
    assert client_key("192.168.1.20") != client_key("192.168.2.20")
    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::9")
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("::ffff:10.0.0.1") == client_key("10.0.0.99")


def test_a_short_dbui_password_is_refused_over_the_api(service: Any) -> None:
    svc = service()
    app = create_app(svc.app_state(), dbui=svc.settings.dbui)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answer = client.put("/api/config", json={"dbui": {"password": "a"}})
        refused(answer, 400, "VALIDATION_ERROR")
        assert "dbui.password: must be at least 16 characters" in answer.text
        ok = client.put("/api/config", json={"dbui": {"password": "a" * 16}})
        assert ok.status_code == 200, ok.text
