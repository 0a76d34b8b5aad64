"""The one contract every error-reporting plugin is tested against.

A reporting plugin sends a request's unhandled errors to an error service.
Its tests subclass :class:`ReporterSuite`, say how to point the plugin at a
local stand-in for the service (:class:`ReportReceiver`, a real HTTP server
on loopback) and how to read what the service received, and inherit the
contract's tests::

    from cargohold.testing.reporting import Report, ReporterSuite

    class TestMyReporter(ReporterSuite):
        section = "myservice"                      # reporting.myservice

        def settings(self, url):
            return {"endpoint": url, "apikey": "0123"}

        def decode(self, delivery):
            event = json.loads(delivery.decoded)
            return [Report(error_class=..., message=..., ...)]

The contract:

* an unhandled error (500 ``UNKNOWN``; 503 ``UNAVAILABLE`` when storage
  fails) is reported with its class, message and stack trace, the route, the
  method, the path, the request id and the authenticated user;
* no credential leaves the process: not the ``Authorization``, ``Cookie``,
  ``Proxy-Authorization`` or ``X-Registry-Auth`` headers, not a custom
  credential header (``X-Auth-Token``), not a ``?password=`` or ``?token=``
  parameter, in the payload as sent (compressed or not) and decoded;
* errors of the protocol (unknown manifest, bad name, method not allowed, no
  such route) are not reported;
* delivery is asynchronous: a service that accepts connections and never
  answers slows no request, and the app's shutdown, which flushes what is
  queued, returns within :attr:`ReporterSuite.shutdown_bound` seconds;
* all of it holds in a real ``cargohold serve`` process (gevent, real
  sockets), configured from the environment.
"""

from __future__ import annotations

import base64
import gzip
import socket
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from cargohold import hookimpl
from cargohold.auth import AuthProvider, Grant
from cargohold.testing.notifications import Delivery, EventReceiver
from cargohold.testing.server import LiveRegistry, free_port

__all__ = ["CREDENTIALS", "Report", "ReportReceiver", "ReporterSuite", "SilentEndpoint", "credential_headers",
           "decoded_body"]

PASSWORD = "hunter2-9f3c"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
#: Every credential value the suite's requests carry; none may reach the service.
CREDENTIALS = (PASSWORD, BASIC, "cookie-77d1", "registry-auth-5e2a", "proxy-token-0b7e", "auth-token-31c9",
               "query-token-6d0a")
#: A query string with credential parameters (and one harmless one).
CREDENTIAL_QUERY = f"n=5&password={PASSWORD}&token=query-token-6d0a"


def credential_headers(request_id: str) -> dict:
    """Request headers carrying every kind of credential, and ``request_id``
    as ``X-Request-Id``."""
    return {
        "Authorization": f"Basic {BASIC}",
        "Cookie": "session=cookie-77d1",
        "X-Registry-Auth": "registry-auth-5e2a",
        "Proxy-Authorization": "Bearer proxy-token-0b7e",
        "X-Auth-Token": "auth-token-31c9",
        "X-Request-Id": request_id,
        "User-Agent": "reporter-test/1.0",
    }


def decoded_body(delivery: Delivery) -> bytes:
    """A received body, decompressed according to its ``Content-Encoding``."""
    encoding = {k.lower(): v for k, v in delivery.headers.items()}.get("content-encoding", "").lower()
    if encoding == "gzip":
        return gzip.decompress(delivery.body)
    if encoding == "deflate":
        return zlib.decompress(delivery.body)
    if encoding in ("", "identity"):
        return delivery.body
    raise AssertionError(f"unexpected Content-Encoding {encoding!r}")


class ReportReceiver(EventReceiver):
    """A real HTTP server on ``127.0.0.1`` standing in for an error service:
    it records every POST (:attr:`deliveries`, any path) and answers 200.
    ``url`` is its root, ``http://127.0.0.1:<port>``."""

    def __init__(self, port: int | None = None):
        super().__init__(port, status=200)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_for_deliveries(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Wait until at least ``count`` POSTs arrived; returns them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} delivery(ies) at the error service within {timeout}s, "
                                         f"got {len(self.deliveries)}")
                self._cond.wait(left)
            return list(self.deliveries)


class SilentEndpoint:
    """A loopback port that takes connections (the kernel completes them
    into the listen backlog) and never answers: a service that hangs.
    ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "SilentEndpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Report:
    """One error as the service received it, in the plugin's own terms
    mapped to the contract's.  ``route`` is the Flask endpoint
    (``v2.tags_list``); ``functions`` the function names of the stack trace,
    in any order; ``headers`` the request headers the report carries."""

    error_class: str
    message: str
    functions: list[str]
    route: str | None
    request_id: str | None
    method: str | None
    path: str | None
    user: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: Any = None


class _NamedUser(AuthProvider):
    def authorize(self, request, access):
        return Grant(user="alice")


class _NamedUserAuth:
    """An auth provider that grants everything as user ``alice``."""

    @hookimpl
    def cargohold_auth_providers(self):
        return {"named-user": lambda params: _NamedUser()}


def _failing_tags(name):
    raise RuntimeError(f"injected failure listing tags of {name}")


class ReporterSuite:
    """The reporting contract (see the module's docstring).  Subclasses set
    :attr:`section` and implement :meth:`settings` and :meth:`decode`; they
    may extend :meth:`check_delivery` for what their protocol sends besides
    the report (headers, API keys)."""

    #: The plugin's section under ``reporting``.
    section: str = ""
    #: Seconds the app's shutdown may take when the service never answers.
    shutdown_bound: float = 6.0
    #: Seconds an erroring request may take when the service never answers.
    request_bound: float = 1.0

    def settings(self, url: str) -> dict:
        """The ``reporting.<section>`` settings that send reports to the
        service at ``url`` (``http://127.0.0.1:<port>``, the root of a
        :class:`ReportReceiver`, a :class:`SilentEndpoint` or a closed port)."""
        raise NotImplementedError

    def decode(self, delivery: Delivery) -> list[Report]:
        """The reports in one POST the service received (maybe none: a
        protocol may post other things, such as session counts)."""
        raise NotImplementedError

    def check_delivery(self, delivery: Delivery, settings: dict) -> None:
        """Protocol checks on a POST that carried a report."""

    # -- helpers --------------------------------------------------------------

    def config(self, url: str, **extra) -> dict:
        """An app's config: in-memory storage, the plugin reporting to ``url``."""
        return {"storage": {"inmemory": {}}, "reporting": {self.section: {**self.settings(url), **extra}}}

    def env(self, url: str) -> dict:
        """The settings as ``CARGOHOLD_REPORTING_<SECTION>_<KEY>`` variables."""
        prefix = f"CARGOHOLD_REPORTING_{self.section.upper()}_"
        return {prefix + key.upper(): str(value) for key, value in self.settings(url).items()}

    def reports(self, receiver: ReportReceiver) -> list[Report]:
        """Every report received so far, checking each delivery that had one."""
        found = []
        for delivery in list(receiver.deliveries):
            reports = self.decode(delivery)
            if reports:
                self.check_delivery(delivery, self.settings(receiver.url))
            found.extend(reports)
        return found

    @staticmethod
    def assert_no_credentials(receiver: ReportReceiver) -> None:
        for delivery in receiver.deliveries:
            for blob in (delivery.body, decoded_body(delivery)):
                for secret in CREDENTIALS:
                    assert secret.encode() not in blob, f"{secret!r} reached the error service"
            for name, value in delivery.headers.items():
                assert not any(secret in value for secret in CREDENTIALS), f"a credential in header {name}"

    # -- fixtures -------------------------------------------------------------

    @pytest.fixture
    def receiver(self):
        with ReportReceiver() as receiver:
            yield receiver

    @pytest.fixture
    def build_app(self, cargohold_make_app):
        """``build_app(config, plugins=())``: an app whose plugin manager
        also holds ``plugins``; shut down at teardown (the test kit's
        ``cargohold_make_app``)."""
        return lambda cfg, plugins=(): cargohold_make_app(cfg, plugins)

    @staticmethod
    def break_tags_list(monkeypatch, app) -> None:
        """Make listing tags raise ``RuntimeError`` (a 500) in ``app``."""
        monkeypatch.setattr(app.extensions["cargohold"].registry.manifests, "tags", _failing_tags)

    # -- the contract ---------------------------------------------------------

    def test_unhandled_error_is_reported_without_credentials(self, build_app, receiver, monkeypatch):
        app = build_app(self.config(receiver.url))
        self.break_tags_list(monkeypatch, app)

        resp = app.test_client().get(f"/v2/team/app/tags/list?{CREDENTIAL_QUERY}",
                                     headers=credential_headers("req-4242"))

        assert resp.status_code == 500
        assert resp.get_json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error",
                                               "detail": None}]}
        assert resp.headers["X-Request-Id"] == "req-4242"
        app.cargohold_shutdown()  # flushes what is queued
        receiver.wait_for_deliveries(1)
        [report] = self.reports(receiver)
        assert report.error_class.rsplit(".", 1)[-1] == "RuntimeError"
        assert "injected failure listing tags of team/app" in report.message
        assert "_failing_tags" in report.functions, report.functions
        assert report.route == "v2.tags_list"
        assert report.request_id == "req-4242"
        assert report.method == "GET"
        assert report.path == "/v2/team/app/tags/list"
        assert report.user is None
        assert report.headers.get("User-Agent") == "reporter-test/1.0", report.headers
        sent = {k.lower() for k in report.headers}
        assert not sent & {"authorization", "cookie", "x-registry-auth", "proxy-authorization", "x-auth-token"}
        self.assert_no_credentials(receiver)

    def test_authenticated_user_is_reported(self, build_app, receiver, monkeypatch):
        cfg = self.config(receiver.url)
        cfg["auth"] = {"named-user": {}}
        app = build_app(cfg, plugins=[_NamedUserAuth()])
        self.break_tags_list(monkeypatch, app)

        resp = app.test_client().get("/v2/app/tags/list", headers=credential_headers("req-user"))

        assert resp.status_code == 500
        app.cargohold_shutdown()
        receiver.wait_for_deliveries(1)
        [report] = self.reports(receiver)
        assert report.user == "alice"
        assert report.request_id == "req-user"
        self.assert_no_credentials(receiver)

    def test_protocol_errors_are_not_reported(self, build_app, receiver):
        app = build_app(self.config(receiver.url))
        client = app.test_client()
        assert client.get("/v2/app/manifests/latest").status_code == 404
        assert client.get("/v2/app/blobs/sha256:" + "0" * 64).status_code == 404
        assert client.get("/v2/BAD/tags/list").status_code == 400
        assert client.post("/v2/").status_code == 405
        assert client.get("/elsewhere").status_code == 404
        app.cargohold_shutdown()  # anything queued would have been sent by now
        assert self.reports(receiver) == []

    def test_a_hanging_service_slows_no_request_and_shutdown_is_bounded(self, build_app, monkeypatch):
        with SilentEndpoint() as silent:
            app = build_app(self.config(silent.url))
            self.break_tags_list(monkeypatch, app)
            client = app.test_client()
            for i in range(3):
                started = time.monotonic()
                resp = client.get("/v2/app/tags/list", headers={"X-Request-Id": f"hang-{i}"})
                took = time.monotonic() - started
                assert resp.status_code == 500
                assert took < self.request_bound, f"request {i} took {took:.2f}s with the service hanging"
            started = time.monotonic()
            app.cargohold_shutdown()
            took = time.monotonic() - started
            assert took < self.shutdown_bound, f"shutdown took {took:.2f}s with the service hanging"

    def test_an_unreachable_service_fails_no_request(self, build_app, monkeypatch):
        closed = free_port()  # nothing listens there
        app = build_app(self.config(f"http://127.0.0.1:{closed}"))
        self.break_tags_list(monkeypatch, app)
        client = app.test_client()
        assert client.get("/v2/app/tags/list").status_code == 500
        assert client.get("/v2/").status_code == 200
        app.cargohold_shutdown()

    def test_a_live_server_reports_a_storage_failure_and_not_a_404(self, receiver):
        """``cargohold serve`` (gevent, real sockets) configured from the
        environment: a push that meets a broken storage root answers 503 and
        is reported; a missing manifest answers 404 and is not."""
        with LiveRegistry(env=self.env(receiver.url)) as registry:
            missing = requests.get(f"{registry.url}/v2/app/manifests/missing", headers=credential_headers("live-404"),
                                   timeout=10)
            assert missing.status_code == 404 and "errors" in missing.json()
            with registry.broken_storage():
                failed = requests.post(f"{registry.url}/v2/app/blobs/uploads/?{CREDENTIAL_QUERY}",
                                       headers=credential_headers("live-77"), timeout=10)
            assert failed.status_code == 503 and failed.json()["errors"][0]["code"] == "UNAVAILABLE"
            receiver.wait_for_deliveries(1)  # sent while the server runs
        # Stopped, which flushed: anything else queued has arrived by now.
        [report] = self.reports(receiver)
        assert report.error_class.rsplit(".", 1)[-1] == "StorageError"
        assert report.route == "v2.start_upload"
        assert report.request_id == "live-77"
        assert report.method == "POST"
        assert report.path == "/v2/app/blobs/uploads/"
        self.assert_no_credentials(receiver)

