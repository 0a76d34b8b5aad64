"""The ``reporting.sentry`` settings' value types (importing no SDK, so that
loading the plugin stays cheap for commands that never report)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


class DsnType:
    """A DSN, ``http(s)://<public key>@<host>[:port]/<project id>``, or empty."""

    @classmethod
    def coerce(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        if isinstance(value, str):
            try:
                parts = urlsplit(value)
                port_ok = parts.port is None or parts.port > 0
            except ValueError:
                parts, port_ok = None, False
            project = parts.path.rstrip("/").rpartition("/")[2] if parts else ""
            if parts and port_ok and parts.scheme in ("http", "https") and parts.username and parts.hostname \
                    and project.isdigit():
                return value
        raise ValueError("expected a DSN such as https://<key>@errors.example.com/<project>")


class SampleRate:
    """The share of errors sent, from 0.0 to 1.0."""

    @classmethod
    def coerce(cls, value: Any) -> float:
        try:
            rate = float(value) if not isinstance(value, bool) else -1.0
        except (TypeError, ValueError):
            rate = -1.0
        if not 0.0 <= rate <= 1.0:
            raise ValueError("expected a number from 0.0 to 1.0")
        return rate
