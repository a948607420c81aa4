"""The security headers every answer carries, whatever answers it."""

from __future__ import annotations


def security_headers(csp: str) -> dict[str, str]:
    """The headers, with `csp` as the Content-Security-Policy.

    No framing (clickjacking), no MIME sniffing, no Referer leaving the daemon.
    """
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


# What the guard replaces in any answer (ASGI header names are lower-case bytes).
HEADER_NAMES = frozenset(name.lower().encode() for name in security_headers(""))


def as_asgi(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """`headers` as ASGI header pairs."""
    return [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()]
