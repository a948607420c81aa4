"""Synchronous client for Syncthing's REST API.

Used from worker threads and scheduler jobs, never from the event loop. Every call
sends the API key in ``X-API-Key``; transient failures (connection errors, timeouts,
5xx) are retried with exponential back-off and jitter. The key never appears in an
exception message or a log line.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
from loguru import logger

Health = Literal["ok", "unreachable", "unauthorized", "starting"]

# A scan returns only once the folder (or sub-path) has been hashed, which for a
# large batch on a slow disk takes minutes, not seconds.
DEFAULT_SCAN_TIMEOUT = 600.0
_BODY_SNIPPET = 200


class SyncthingError(Exception):
    """Any failure talking to Syncthing; ``status_code`` is set for HTTP answers."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class SyncthingUnavailable(SyncthingError):
    """Syncthing could not be reached (or kept answering 5xx) after every retry."""


class SyncthingUnauthorized(SyncthingError):
    """Syncthing refused the API key (401; 403 ``CSRF Error`` or, 2.x, ``Forbidden``).

    Not retried: the same key gets the same answer.
    """


class SyncthingStarting(SyncthingUnavailable):
    """Syncthing answers but is not serving its API yet (2.x database migration).

    During the first start of 2.x after 1.x (or 2.0.3) every request answers 200
    ``text/plain`` "Database migration in progress": nothing in that answer is a
    result, and it can last for hours on a large database. Not retried at once; the
    caller tries again later like for any unavailable Syncthing.
    """


class SyncthingClient:
    """Blocking client for one Syncthing instance; thread-safe like ``httpx.Client``.

    ``retries`` is the number of extra attempts after the first one. Back-off before
    retry *n* (0-based) is ``min(backoff_max, backoff_base * 2**n)`` scaled by a
    random factor in [0.5, 1.0]. ``sleep`` is injectable so tests need not wait.
    Use as a context manager or call ``close()``.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 10,
        transport: httpx.BaseTransport | None = None,
        retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        scan_timeout: float = DEFAULT_SCAN_TIMEOUT,
    ) -> None:
        self._api_key = api_key
        self._timeout = timeout
        self._scan_timeout = max(scan_timeout, timeout)
        self._retries = max(0, retries)
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"X-API-Key": api_key, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def __enter__(self) -> SyncthingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- system ------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /rest/system/ping``; returns when Syncthing answers ``pong``."""
        self._json("GET", "/rest/system/ping")

    def my_id(self) -> str:
        """This instance's device ID (``myID`` of ``GET /rest/system/status``)."""
        status = self._json("GET", "/rest/system/status")
        my_id = status.get("myID") if isinstance(status, dict) else None
        if not isinstance(my_id, str) or not my_id:
            raise SyncthingError("GET /rest/system/status: answer has no myID")
        return my_id

    def version(self) -> dict[str, Any]:
        """``GET /rest/system/version``: ``{version, longVersion, os, arch, ...}``."""
        return self._object("GET", "/rest/system/version")

    def connections(self) -> dict[str, Any]:
        """``GET /rest/system/connections``: ``{total, connections: {ID: {...}}}``.

        Each connection entry has at least ``connected`` (bool) and ``address``.
        """
        return self._object("GET", "/rest/system/connections")

    def health(self, timeout: float | None = None) -> Health:
        """Classify Syncthing for ``/health`` with one un-retried ping.

        ``"unauthorized"`` for a refused key, ``"starting"`` while a 2.x database
        migration runs, ``"ok"`` on pong, ``"unreachable"`` for anything else (down,
        timeout, 5xx, garbage answer). Never raises.
        ``timeout`` defaults to the client's.
        """
        try:
            response = self._request(
                "GET", "/rest/system/ping", timeout=timeout, retries=0
            )
            self._decode(response, "GET /rest/system/ping")
        except SyncthingUnauthorized:
            return "unauthorized"
        except SyncthingStarting:
            return "starting"
        except SyncthingError:
            return "unreachable"
        return "ok"

    # -- config ------------------------------------------------------------------

    def devices(self) -> list[dict[str, Any]]:
        """``GET /rest/config/devices``: every configured device, this one included.

        Entries have ``deviceID``, ``name``, ``addresses``, ``paused`` ...
        """
        answer = self._json("GET", "/rest/config/devices")
        if not isinstance(answer, list):
            raise SyncthingError("GET /rest/config/devices: answer is not a list")
        return answer

    def folder(
        self,
        folder_id: str,
        *,
        timeout: float | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """``GET /rest/config/folders/{id}``: ``{id, path, type, devices: [...]}``.

        ``devices`` entries are ``{deviceID, introducedBy, encryptionPassword}`` and
        include this instance. An unknown folder raises ``SyncthingError`` (404).
        ``timeout``/``retries`` override the client's for callers that must answer
        quickly (an API request).
        """
        what = f"/rest/config/folders/{_seg(folder_id)}"
        response = self._request("GET", what, timeout=timeout, retries=retries)
        return self._decode_object(response, f"GET {what}")

    def put_device(self, device: dict[str, Any]) -> None:
        """``PUT /rest/config/devices/{deviceID}``: add or replace one device.

        Fields left out take Syncthing's defaults (``PUT`` replaces the object).
        """
        device_id = device["deviceID"]
        self._request("PUT", f"/rest/config/devices/{_seg(device_id)}", body=device)

    def put_folder(self, folder: dict[str, Any]) -> None:
        """``PUT /rest/config/folders/{id}``: add or replace one folder."""
        self._request("PUT", f"/rest/config/folders/{_seg(folder['id'])}", body=folder)

    # -- database ----------------------------------------------------------------

    def scan(self, folder_id: str, sub: str | None = None) -> None:
        """``POST /rest/db/scan``: rescan the folder (or ``sub`` path inside it).

        Blocks until Syncthing has scanned, with the longer ``scan_timeout``.
        """
        params = {"folder": folder_id}
        if sub:
            params["sub"] = sub
        self._request(
            "POST", "/rest/db/scan", params=params, timeout=self._scan_timeout
        )

    def folder_status(self, folder_id: str) -> dict[str, Any]:
        """``GET /rest/db/status``: ``{state, globalBytes, needBytes, ...}``."""
        return self._object("GET", "/rest/db/status", params={"folder": folder_id})

    def db_file(self, folder_id: str, name: str) -> dict[str, Any] | None:
        """``GET /rest/db/file``: ``{global, local, availability}`` or None on 404.

        ``name`` is relative to the folder root, posix. ``global``/``local`` carry
        ``name``, ``size``, ``deleted``, ``invalid``, ``ignored``, ``version`` (a
        list of ``"SHORTID:counter"`` strings) ...; ``availability`` lists the
        connected devices holding the global version.
        """
        response = self._request(
            "GET",
            "/rest/db/file",
            params={"folder": folder_id, "file": name},
            allow_404=True,
        )
        if response.status_code == 404:
            return None
        return self._decode_object(response, "GET /rest/db/file")

    def remote_need_page(
        self, folder_id: str, device_id: str, page: int, perpage: int = 1000
    ) -> list[dict[str, Any]]:
        """``GET /rest/db/remoteneed``: one page (1-based) of what a device needs.

        Entries carry ``name``, ``size``, ``deleted``, ``version``. The list grows with
        the library (a Receive Only remote with ``ignoreDelete`` keeps every deletion
        it ignored), so the batch check never reads it; verify reads it only to say
        whether a remote still holds a file that is missing or corrupt here.
        """
        answer = self._object(
            "GET",
            "/rest/db/remoteneed",
            params={
                "folder": folder_id,
                "device": device_id,
                "page": str(page),
                "perpage": str(perpage),
            },
        )
        files = answer.get("files") or []
        if not isinstance(files, list):
            raise SyncthingError("GET /rest/db/remoteneed: files is not a list")
        return [f for f in files if isinstance(f, dict)]

    # -- plumbing ----------------------------------------------------------------

    def _object(
        self, method: str, path: str, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        response = self._request(method, path, params=params)
        return self._decode_object(response, f"{method} {path}")

    def _json(self, method: str, path: str) -> Any:
        response = self._request(method, path)
        return self._decode(response, f"{method} {path}")

    def _decode_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        answer = self._decode(response, what)
        if not isinstance(answer, dict):
            raise SyncthingError(f"{what}: answer is not a JSON object")
        return answer

    def _decode(self, response: httpx.Response, what: str) -> Any:
        try:
            return json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            snippet = self._redact(response.text[:_BODY_SNIPPET])
            raise SyncthingError(
                f"{what}: malformed JSON from Syncthing "
                f"(HTTP {response.status_code}): {snippet!r}",
                response.status_code,
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        timeout: float | None = None,
        retries: int | None = None,
        allow_404: bool = False,
    ) -> httpx.Response:
        """Send one call, retrying transient failures; raise on anything else."""
        what = f"{method} {path}"
        attempts = 1 + (self._retries if retries is None else retries)
        failure = ""
        for attempt in range(attempts):
            if attempt:
                self._back_off(what, attempt - 1, failure)
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    json=body,
                    timeout=timeout if timeout is not None else self._timeout,
                )
            except httpx.TimeoutException:
                failure = "timed out"
                continue
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                # A wrong syncthing.url: retrying cannot help.
                raise SyncthingError(
                    f"{what}: invalid Syncthing URL ({self._redact(str(exc))})"
                ) from None
            except httpx.TransportError as exc:
                # The exception text names the URL only, but redact to be certain.
                failure = f"connection failed ({type(exc).__name__}: "
                failure += f"{self._redact(str(exc))})"
                continue
            if response.status_code >= 500:
                failure = f"HTTP {response.status_code}: {self._snippet(response)}"
                continue
            self._raise_for_client_error(response, what, allow_404)
            self._raise_if_starting(response, what)
            return response
        raise SyncthingUnavailable(
            f"{what}: Syncthing unavailable after {attempts} attempt(s): {failure}"
        )

    def _raise_for_client_error(
        self, response: httpx.Response, what: str, allow_404: bool
    ) -> None:
        status = response.status_code
        if status in (401, 403):
            raise SyncthingUnauthorized(
                f"{what}: Syncthing refused the API key (HTTP {status}: "
                f"{self._snippet(response)}); check syncthing.api_key",
                status,
            )
        if status == 404 and allow_404:
            return
        if status >= 400:
            raise SyncthingError(
                f"{what}: HTTP {status}: {self._snippet(response)}", status
            )

    def _raise_if_starting(self, response: httpx.Response, what: str) -> None:
        # Syncthing 2 answers every call this way while it migrates its database:
        # taken at face value, a scan would look done and an empty answer valid.
        if response.status_code >= 300:
            return
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "text/plain":
            return
        text = response.text[:_BODY_SNIPPET].strip()
        if "migration" in text.lower():
            raise SyncthingStarting(
                f"{what}: Syncthing is starting (HTTP {response.status_code}: "
                f"{self._redact(text)!r}); trying again later",
                response.status_code,
            )

    def _back_off(self, what: str, retry: int, failure: str) -> None:
        delay = min(self._backoff_max, self._backoff_base * (2**retry))
        delay *= random.uniform(0.5, 1.0)
        logger.bind(event="syncthing_retry", call=what, retry=retry + 1).warning(
            "Syncthing {}: {}; retrying in {:.2f}s", what, failure, delay
        )
        self._sleep(delay)

    def _snippet(self, response: httpx.Response) -> str:
        return self._redact(response.text[:_BODY_SNIPPET].strip())

    def _redact(self, text: str) -> str:
        if self._api_key:
            return text.replace(self._api_key, "***")
        return text


def _seg(value: str) -> str:
    """Quote one URL path segment (folder ids may contain anything)."""
    return quote(value, safe="")
