"""The uvicorn server the daemon serves its app in (the service owns the signals)."""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any

import uvicorn


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def server_config(app: Any, server: Any) -> uvicorn.Config:
    """uvicorn settings for the daemon's app and `server.*` settings.

    uvicorn believes X-Forwarded-For from 127.0.0.1 by default, which would let any
    local client pick the address the wrong-key limiter counts: forwarded headers
    are honoured only from `server.trusted_proxies`.
    """
    proxies = list(server.trusted_proxies)
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        server_header=False,
    )
