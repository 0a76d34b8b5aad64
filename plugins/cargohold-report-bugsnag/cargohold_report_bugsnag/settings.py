"""Value types of ``reporting.bugsnag``: the API key, and the keys that
moved to ``reporting.sentry``."""

from __future__ import annotations

from typing import Any


class ApiKey:
    """A Bugsnag project's API key (letters and digits), or empty: off."""

    secret = True

    @classmethod
    def coerce(cls, value: Any) -> str:
        if value in (None, ""):
            return ""
        if isinstance(value, str) and value.strip().isalnum():
            return value.strip()
        raise ValueError("expected the project's API key, such as 0123456789abcdef0123456789abcdef")


class Moved:
    """A key that this section no longer has: any value stops start-up with
    a message saying where it went, never echoing the value (the old
    ``dsn`` carries a key)."""

    secret = True

    def __init__(self, to: str, where: str):
        self.to = to
        self.where = where

    def coerce(self, value: Any) -> Any:
        raise ValueError(f"moved to {self.to} ({self.where})")
