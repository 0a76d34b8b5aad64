"""Sending a request's unhandled error through sentry-sdk, without credentials.

What an event carries: the exception and its stack (without local
variables, which may hold credentials), tags ``route``, ``method`` and
``request_id``, the transaction name (the route), the user name if the
request was authenticated, and a request section with the method, path and
headers.  The headers are those the core hands to reporters (already without
``Authorization``, cookies and the like); :func:`scrub` removes anything
credential-like once more, just before the SDK sends the event, wherever
in the event it is.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import sentry_sdk

#: Names of values that never leave the process (headers, keys, query params).
_CREDENTIAL = re.compile(r"authori[sz]ation|cookie|passw(or)?d|secret|token|api[-_]?key|credential|session",
                         re.IGNORECASE)
FILTERED = "[Filtered]"


def scrub(event: dict, hint: dict | None = None) -> dict:
    """``before_send``: drop request headers and query parameters with
    credential-like names, and replace credential-like keys anywhere else."""
    request = event.get("request")
    if isinstance(request, dict):
        headers = request.get("headers")
        if isinstance(headers, Mapping):
            request["headers"] = {k: v for k, v in headers.items() if not _CREDENTIAL.search(str(k))}
        request.pop("cookies", None)
        request.pop("data", None)
        query = request.get("query_string")
        if isinstance(query, str) and query:
            request["query_string"] = "&".join(
                p for p in query.split("&") if not _CREDENTIAL.search(p.partition("=")[0]))
    for key in ("extra", "contexts", "tags", "user"):
        if key in event:
            event[key] = _scrub_values(event[key])
    return event


def _scrub_values(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (FILTERED if _CREDENTIAL.search(str(k)) else _scrub_values(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_values(v) for v in value]
    return value


class ErrorReporter:
    """Sends errors to the DSN of ``reporting.bugsnag`` with the SDK's own
    HTTP transport (queued; sent from a background worker).  One per app:
    the SDK client is not the process-global one, so apps do not share it."""

    def __init__(self, client: sentry_sdk.Client):
        self.client = client

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "ErrorReporter":
        rate = settings.get("samplerate")
        client = sentry_sdk.Client(
            dsn=settings["dsn"],
            environment=settings.get("environment") or None,
            release=settings.get("release") or None,
            sample_rate=1.0 if rate is None else rate,
            # Only what is sent here: no logging, thread or framework hooks
            # of the SDK's own, which would report outside this contract.
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[],
            include_local_variables=False,
            max_breadcrumbs=0,
            before_send=scrub,
        )
        return cls(client)

    def report(self, error: BaseException, request_info: Mapping[str, Any]) -> None:
        """Queue ``error`` with what ``request_info`` says of its request."""
        route = request_info.get("endpoint") or request_info.get("route") or "unmatched"
        request_section = {
            "method": request_info.get("method"),
            "url": request_info.get("path"),
            "headers": dict(request_info.get("headers") or {}),
        }
        with sentry_sdk.new_scope() as scope:
            scope.set_client(self.client)
            scope.set_transaction_name(route)
            scope.set_tag("route", route)
            scope.set_tag("method", request_info.get("method"))
            if request_info.get("id"):
                scope.set_tag("request_id", request_info["id"])
            if request_info.get("user"):
                scope.set_user({"username": request_info["user"]})

            def add_request(event, hint):
                event["request"] = dict(request_section)
                return event

            scope.add_event_processor(add_request)
            scope.capture_exception(error)

    def flush(self, timeout: float = 2.0) -> None:
        """Wait up to ``timeout`` seconds for queued events to be sent."""
        self.client.flush(timeout=timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Send what is queued (up to ``timeout`` seconds) and stop the transport."""
        self.client.close(timeout=timeout)
