"""Sending a request's unhandled error through sentry-sdk, without credentials.

What an event carries: the exception and its stack (without local
variables, which may hold credentials), tags ``route``, ``method`` and
``request_id``, the transaction name (the route), the user name if the
request was authenticated, and a request section with the method, path and
headers.  The headers are those the core hands to reporters (already without
``Authorization``, cookies and the like); :func:`scrub` removes anything
credential-like once more (:mod:`cargohold.scrub`), just before the SDK sends
the event, wherever in the event it is.

Works with sentry-sdk 2.x and 3.x; they differ in how local variables are
turned off (:func:`_no_local_variables`).
"""

from __future__ import annotations

from typing import Any, Mapping

import sentry_sdk

from cargohold.scrub import scrub_headers, scrub_query, scrub_values

#: Seconds the SDK may take to send what is queued when the app shuts down.
SHUTDOWN_TIMEOUT = 2.0


def scrub(event: dict, hint: dict | None = None) -> dict:
    """``before_send``: drop request headers and query parameters with
    credential-like names, and replace credential-like keys anywhere else."""
    request = event.get("request")
    if isinstance(request, dict):
        if isinstance(request.get("headers"), Mapping):
            request["headers"] = scrub_headers(request["headers"])
        request.pop("cookies", None)
        request.pop("data", None)
        if isinstance(request.get("query_string"), str):
            request["query_string"] = scrub_query(request["query_string"])
    for key in ("extra", "contexts", "tags", "user"):
        if key in event:
            event[key] = scrub_values(event[key])
    return event


def _no_local_variables() -> dict:
    """The client option that keeps frames' local variables out of events:
    ``data_collection`` from sentry-sdk 3, ``include_local_variables`` before."""
    if int(sentry_sdk.VERSION.split(".", 1)[0]) >= 3:
        return {"data_collection": {"stack_frame_variables": False}}
    return {"include_local_variables": False}


class ErrorReporter:
    """Sends errors to the DSN of ``reporting.sentry`` with the SDK's own
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
            max_breadcrumbs=0,
            # Nothing but the events sent here: no session or client reports.
            auto_session_tracking=False,
            send_client_reports=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            before_send=scrub,
            **_no_local_variables(),
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

    def flush(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Wait up to ``timeout`` seconds for queued events to be sent."""
        self.client.flush(timeout=timeout)

    def close(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Send what is queued (up to ``timeout`` seconds) and stop the transport."""
        self.client.close(timeout=timeout)
