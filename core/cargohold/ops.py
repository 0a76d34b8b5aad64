"""The operational endpoints: ``/healthz`` (readiness) and Prometheus metrics
(``http.debug.prometheus.path``, default ``/metrics``).

Where they are served:

* ``http.debug.addr`` empty (the default): on the main address, next to
  ``/v2/`` (below ``http.prefix`` if set).  ``/healthz`` needs no
  credentials, since load balancers and probes have none; it says only
  ``ok`` or which check failed.  Metrics need none on an open registry; with
  an auth provider configured, the caller must be granted
  ``registry:metrics:*`` by it, like ``registry:catalog:*`` for the catalog.
* ``http.debug.addr`` set: only there, on a listener of their own, without
  auth and with the failing check's error message; keep that address on a
  private interface.  ``/debug/health`` answers like ``/healthz``, as on the
  reference registry's debug server.

``http.debug.prometheus.enabled: false`` turns metrics off (404).
"""

from __future__ import annotations

import json
from typing import Callable

from flask import Blueprint, Flask, Response, current_app, request

from cargohold.auth import Access, authorize
from cargohold.errors import MethodNotAllowed, NotFound, error_body
from cargohold.health import readiness

#: What the auth provider is asked for metrics on the main address.
METRICS_ACCESS = Access("registry", "metrics", ("*",))
HEALTH_PATH = "/healthz"
DEBUG_HEALTH_PATH = "/debug/health"


def health(state, detailed: bool) -> tuple[int, dict]:
    """``(status, body)`` of a readiness request: 200 ``{"status": "ok",
    "checks": {...}}`` or 503 ``{"status": "unavailable", "checks": {...}}``
    naming the failing check (with its error message when ``detailed``)."""
    results = readiness(state.driver)
    checks = {}
    for r in results:
        if r.ok:
            checks[r.name] = "ok"
        else:
            checks[r.name] = f"{r.error}: {r.detail}" if detailed and r.detail else r.error
    ok = all(r.ok for r in results)
    return (200 if ok else 503), {"status": "ok" if ok else "unavailable", "checks": checks}


def _json(status: int, body: dict) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def blueprint(cfg: dict) -> Blueprint:
    """The endpoints for the main address (when ``http.debug.addr`` is empty)."""
    ops = Blueprint("ops", __name__)
    prometheus = cfg["http"]["debug"]["prometheus"]

    @ops.route(HEALTH_PATH, methods=["GET", "HEAD"])
    def healthz():
        return _json(*health(current_app.extensions["cargohold"], detailed=False))

    if prometheus["enabled"]:
        @ops.route(prometheus["path"], methods=["GET"])
        def metrics():
            state = current_app.extensions["cargohold"]
            _authorize_metrics(state)  # the provider decides (the default one allows all)
            body, content_type = state.metrics.exposition()
            return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})

    return ops


def _authorize_metrics(state) -> None:
    authorize(state.auth, request, [METRICS_ACCESS])


def debug_app(app: Flask) -> Callable:
    """The WSGI app of the debug address: readiness at ``/healthz`` and
    ``/debug/health``, metrics at ``http.debug.prometheus.path``, a spec
    JSON 404 for anything else.  Shares ``app``'s state (driver, metrics)."""
    state = app.extensions["cargohold"]
    prometheus = state.config["http"]["debug"]["prometheus"]
    metrics_path = prometheus["path"] if prometheus["enabled"] else None

    def respond(start_response, status: int, content_type: str, body: bytes, head: bool):
        reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}[status]
        start_response(f"{status} {reason}", [
            ("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [b"" if head else body]

    def wsgi(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        head = method == "HEAD"
        if path in (HEALTH_PATH, DEBUG_HEALTH_PATH, metrics_path) and method not in ("GET", "HEAD"):
            error = MethodNotAllowed(detail={"method": method[:20], "path": path[:200]})
            body = json.dumps(error_body([error])).encode()
            return respond(start_response, 405, "application/json", body, head)
        if path in (HEALTH_PATH, DEBUG_HEALTH_PATH):
            status, doc = health(state, detailed=True)
            return respond(start_response, status, "application/json", json.dumps(doc).encode(), head)
        if metrics_path is not None and path == metrics_path:
            body, content_type = state.metrics.exposition()
            return respond(start_response, 200, content_type, body, head)
        body = json.dumps(error_body([NotFound(detail={"path": path[:200]})])).encode()
        return respond(start_response, 404, "application/json", body, head)

    return wsgi

