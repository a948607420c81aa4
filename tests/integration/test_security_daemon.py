"""Attacks on `media-pipeline run` as a real subprocess (the daemon's own uvicorn)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.test_daemon import cli, running, write

KEY = "s3cret-" * 6


def test_forwarded_for_does_not_buy_more_guesses(tmp_path: Path) -> None:
    """A local client rotating X-Forwarded-For is still one client to the limiter."""
    config = write(tmp_path, auth={"enabled": True, "api_key": KEY})
    with running(config) as (_, url), httpx.Client(base_url=url, timeout=10) as http:
        answers = []
        for n in range(25):
            headers = {
                "X-API-Key": f"guess-{n}",
                "X-Forwarded-For": f"10.0.{n}.1",
                "Forwarded": f"for=10.0.{n}.1",
            }
            answers.append(http.get("/api/files", headers=headers).status_code)
        assert answers[:20] == [401] * 20
        assert answers[20:] == [429] * 5, answers
        # The owner, from the same address and with the right key, is served.
        assert http.get("/api/files", headers={"X-API-Key": KEY}).status_code == 200
        # The daemon's own uvicorn also refuses a rebinding Host.
        rebound = http.get("/api/files", headers={"X-API-Key": KEY, "Host": "evil.io"})
        assert rebound.status_code == 400
        assert rebound.headers["x-frame-options"] == "DENY"
        # The CLI still reaches it (JSON body, loopback Host, the key from the config).
        triggered = cli("trigger", "batch", "-c", str(config))
        assert triggered.returncode == 0, triggered.stderr + triggered.stdout
