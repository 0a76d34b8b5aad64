"""Value types of ``reporting.sentry`` (importing no SDK, so that loading the
plugin stays cheap for commands that never report)."""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult

from cargohold.config import HttpUrl


class _Dsn(HttpUrl):
    secret = True  # the DSN carries the project's key

    def accept(self, parts: SplitResult) -> bool:
        return parts.path.rstrip("/").rpartition("/")[2].isdigit()  # the project id


#: A DSN, ``http(s)://<public key>@<host>[:port]/<project id>``, or empty.
DsnType = _Dsn("a DSN such as https://<key>@errors.example.com/<project>", userinfo=True)


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
