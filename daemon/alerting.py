"""Apprise as the delivery boundary of pipeline/alerts.py (one URL syntax for all)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import apprise

from pipeline.alerts import Outcome

# Apprise logs through `logging`; its lines can carry a URL's secrets.
logging.getLogger("apprise").setLevel(logging.CRITICAL)


def masked_url(url: str) -> str:
    """The URL as Apprise prints it with privacy on (passwords and tokens hidden)."""
    plugin = apprise.Apprise.instantiate(url)
    if not plugin:
        return url.split(":", 1)[0] + "://(unreadable URL)"
    return str(plugin.url(privacy=True))


def apprise_delivery(
    urls: Callable[[], list[str]],
) -> Callable[[str, str], list[Outcome]]:
    """A `Deliver` that sends to each configured URL separately, for per-URL answers."""

    def deliver(title: str, body: str) -> list[Outcome]:
        return [_send_one(url, title, body) for url in urls()]

    return deliver


def _send_one(url: str, title: str, body: str) -> Outcome:
    target = masked_url(url)
    sender = apprise.Apprise()
    if not sender.add(url):
        return Outcome(target, False, "not a URL Apprise understands")
    try:
        delivered = bool(sender.notify(title=title, body=body))
    except Exception as exc:  # noqa: BLE001 - a plugin's failure is an answer
        return Outcome(target, False, type(exc).__name__)
    return Outcome(target, delivered, None if delivered else "the receiver refused it")
