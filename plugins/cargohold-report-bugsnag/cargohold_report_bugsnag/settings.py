"""The ``reporting.bugsnag`` settings' value types (importing no SDK, so that
loading the plugin stays cheap for commands that never report)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


class ApiKey:
    """A Bugsnag project's API key (letters and digits), or empty: off."""

    @classmethod
    def coerce(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        if isinstance(value, str) and value.strip().isalnum():
            return value.strip()
        raise ValueError("expected the project's API key, such as 0123456789abcdef0123456789abcdef")


class NotifyEndpoint:
    """The URL events are posted to, ``http(s)://host[:port][/path]``, or
    empty: Bugsnag's own."""

    @classmethod
    def coerce(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        if isinstance(value, str):
            try:
                parts = urlsplit(value.strip())
                port_ok = parts.port is None or parts.port > 0
            except ValueError:
                parts, port_ok = None, False
            if parts and port_ok and parts.scheme in ("http", "https") and parts.hostname and not parts.username:
                return value.strip()
        raise ValueError("expected an http(s) URL such as https://notify.bugsnag.example.com")


class Moved:
    """A key that this section no longer has: any value stops start-up with
    a message saying where it went."""

    def __init__(self, to: str, where: str):
        self.to = to
        self.where = where

    def coerce(self, value: Any) -> Any:
        raise ValueError(f"moved to {self.to} ({self.where})")
