"""Sending a request's unhandled error to Bugsnag, without credentials.

One :class:`bugsnag.Client` per app (never the package's global one, whose
``sys.excepthook`` is removed on import), set up for nothing but the reports
sent here: no ``sys.excepthook``, no automatic notification, no sessions, no
breadcrumbs, no environment.

What an event carries (Bugsnag's notify payload, version 4):

* the exception's class, message and stack trace (with a few lines of source
  around each frame, as Bugsnag shows them; never local variables), and the
  chained exceptions (``raise ... from``);
* ``context``: the route, as a Flask endpoint (``v2.put_manifest``);
* ``severity`` ``error``, ``unhandled``;
* ``user``: the authenticated user name as ``id`` and ``name``, if any;
* the ``request`` tab: ``url`` (the path, without the query string),
  ``httpMethod``, ``route`` (the URL rule), ``requestId`` (the id in the
  response's ``X-Request-Id`` and in the access log) and ``headers``;
* ``releaseStage``, ``app.version`` (cargohold's), ``device.hostname``.

Credentials: the core hands reporters the headers without ``Authorization``,
``Proxy-Authorization``, ``Cookie`` and ``X-Registry-Auth``.  A
``before_notify`` callback then drops any other header with a
credential-like name and replaces credential-like keys anywhere in the
metadata and the user (:mod:`cargohold.scrub`); the same name fragments are
the client's ``params_filters``, applied once more as the payload is encoded.

Delivery: :class:`BackgroundDelivery` posts from one background thread (a
greenlet under ``cargohold serve``) with a timeout; a request only builds the
payload and queues it.  The package's own delivery starts a thread per event
without a timeout, which a hanging endpoint would pile up.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Mapping

import bugsnag
from bugsnag.delivery import Delivery, default_headers

import cargohold
from cargohold.scrub import CREDENTIAL_FRAGMENTS, scrub_headers, scrub_values

log = logging.getLogger("cargohold.report.bugsnag")

# Importing bugsnag makes the package's global default client, which hooks
# sys.excepthook and threading.excepthook: with BUGSNAG_API_KEY in the
# environment it would send any uncaught exception of the process, outside
# this plugin's scrubbing.  Only the apps' own clients report.
bugsnag.legacy.default_client.uninstall_sys_hook()

#: Seconds one POST to the endpoint may take.
POST_TIMEOUT = 5.0
#: Seconds the app's shutdown waits for queued events to be sent.
SHUTDOWN_TIMEOUT = 2.0
#: Events waiting to be sent, at most; more are dropped (and logged).
QUEUE_LIMIT = 100


class BackgroundDelivery(Delivery):
    """A :class:`bugsnag.delivery.Delivery` whose :meth:`deliver` only queues: one
    background thread posts the payloads in order, each with a timeout of
    ``timeout`` seconds, and logs failures.  At most ``limit`` payloads wait;
    more are dropped.  Sessions are not sent (session tracking is off).

    The thread starts with the first payload, and again in a forked child."""

    def __init__(self, timeout: float = POST_TIMEOUT, limit: int = QUEUE_LIMIT):
        super().__init__()
        self.timeout = timeout
        self.limit = limit
        self.dropped = 0
        self._queue: collections.deque = collections.deque()
        self._pending = 0  # queued or being posted
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0

    def deliver(self, config, payload: Any, options: dict | None = None) -> None:
        done = (options or {}).pop("post_delivery_callback", None)
        try:
            url = (options or {}).get("endpoint") or config.endpoint
            body = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
            with self._cond:
                if self._closed or self._pending >= self.limit:
                    self.dropped += 1
                    log.warning("Bugsnag event dropped: %s", "shut down" if self._closed else "too many queued")
                    return
                self._queue.append((url, default_headers(config.api_key), body))
                self._pending += 1
                self._start_worker()
                self._cond.notify_all()
        finally:
            if callable(done):
                done()

    def deliver_sessions(self, config, payload: Any, options: dict | None = None) -> None:
        done = (options or {}).pop("post_delivery_callback", None)
        if callable(done):
            done()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until everything queued was
        posted (or failed); whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self, timeout: float) -> None:
        """:meth:`flush`, then stop the thread; what is left is dropped."""
        if not self.flush(timeout):
            log.warning("Bugsnag: %d event(s) not sent within %.1fs of shutdown", self._pending, timeout)
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()

    def _start_worker(self) -> None:
        # Called with the lock held.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="bugsnag-delivery", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                url, headers, body = self._queue.popleft()
            try:
                self._post(url, headers, body)
            except Exception as e:  # the endpoint is down, slow or refuses
                log.warning("Bugsnag delivery to %s failed: %s", url, e)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _post(self, url: str, headers: dict, body: bytes) -> None:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()


def scrub_event(event) -> None:
    """``before_notify``: drop credential-like headers, replace
    credential-like keys in the metadata and the user, drop empty tabs."""
    request = event.metadata.get("request")
    if isinstance(request, dict) and isinstance(request.get("headers"), Mapping):
        request["headers"] = scrub_headers(request["headers"])
    event.metadata = scrub_values({name: tab for name, tab in event.metadata.items() if tab})
    event.user = scrub_values(event.user)


class BugsnagReporter:
    """Sends errors to Bugsnag (or ``endpoint``) with the API key of
    ``reporting.bugsnag``.  One per app."""

    def __init__(self, client: bugsnag.Client, delivery: BackgroundDelivery):
        self.client = client
        self.delivery = delivery

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> "BugsnagReporter":
        delivery = BackgroundDelivery()
        options = {"endpoint": settings.get("endpoint") or None, "release_stage": settings.get("releasestage") or None}
        client = bugsnag.Client(
            configuration=bugsnag.Configuration(logger=log),
            install_sys_hook=False,
            api_key=settings["apikey"],
            **{k: v for k, v in options.items() if v is not None},
            app_version=cargohold.__version__,
            asynchronous=True,
            auto_notify=False,
            auto_capture_sessions=False,
            send_environment=False,
            max_breadcrumbs=0,
            delivery=delivery,
            params_filters=list(CREDENTIAL_FRAGMENTS),
            project_root=os.path.dirname(os.path.dirname(os.path.abspath(cargohold.__file__))),
        )
        client.configuration.middleware.before_notify(scrub_event)
        return cls(client, delivery)

    def report(self, error: BaseException, request_info: Mapping[str, Any]) -> None:
        """Queue ``error`` with what ``request_info`` says of its request."""
        user = request_info.get("user")
        self.client.notify(
            error,
            unhandled=True,
            severity="error",
            severity_reason={"type": "unhandledExceptionMiddleware", "attributes": {"framework": "cargohold"}},
            context=request_info.get("endpoint") or "unmatched",
            user={"id": user, "name": user} if user else {},
            metadata={"request": {
                "url": request_info.get("path"),
                "httpMethod": request_info.get("method"),
                "route": request_info.get("route"),
                "requestId": request_info.get("id"),
                "headers": dict(request_info.get("headers") or {}),
            }},
        )

    def flush(self, timeout: float = SHUTDOWN_TIMEOUT) -> bool:
        """Wait up to ``timeout`` seconds for queued events to be sent."""
        return self.delivery.flush(timeout)

    def close(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Send what is queued (up to ``timeout`` seconds) and stop."""
        self.delivery.close(timeout)
