"""The JSON envelope: `{"status": "ok", "data": ...}` or an error with a code."""

from __future__ import annotations

from typing import Any

from loguru import logger
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from web.headers import security_headers

CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "VALIDATION_ERROR",
    409: "CONFLICT",
    413: "VALIDATION_ERROR",
    415: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "DEPENDENCY_ERROR",
    503: "DEPENDENCY_ERROR",
}


class ApiError(Exception):
    """Raise from a route to answer with the error envelope."""

    def __init__(self, status_code: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.code = code or CODES.get(status_code, "INTERNAL_ERROR")
        self.message = message


def ok(data: Any, status_code: int = 200) -> JSONResponse:
    return JSONResponse({"status": "ok", "data": data}, status_code=status_code)


def error(status_code: int, message: str, code: str | None = None) -> JSONResponse:
    body = {
        "status": "error",
        "code": code or CODES.get(status_code, "INTERNAL_ERROR"),
        "message": message,
    }
    return JSONResponse(body, status_code=status_code)


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error(exc.status_code, exc.message, exc.code)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    messages = {
        404: f"no route {request.url.path}",
        405: f"method {request.method} not allowed",
    }
    return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))


# Starlette answers an unhandled error from its outermost middleware, outside the
# guard that adds the security headers, so this answer carries its own: a JSON
# error needs nothing at all from a browser.
ERROR_HEADERS = security_headers("default-src 'none'; frame-ancestors 'none'")


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.bind(event="http", status="500").opt(exception=exc).error(
        "unhandled error on {} {}", request.method, request.url.path
    )
    answer = error(500, "internal error; see the daemon log")
    answer.headers.update(ERROR_HEADERS)
    return answer


HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: internal_error}
