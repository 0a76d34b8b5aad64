"""What hooks and logs learn about the request being served."""

from __future__ import annotations

import itertools
import os
import re
from urllib.parse import parse_qsl, quote, urlencode

from flask import current_app, g, has_request_context, request

try:
    # Flask's own context variables (Flask 3.x): one lookup each, where every
    # attribute read through the public proxies (request, current_app, g)
    # costs about a microsecond.  Used only by request_parts(), with the
    # proxies as the fallback.
    from flask.globals import _cv_app, _cv_request
except ImportError:  # pragma: no cover - a Flask that has moved them
    _cv_app = _cv_request = None

# Never handed to plugins (reporters, metrics, events).
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization", "x-registry-auth")
# Query parameters whose values never reach logs.
CREDENTIAL_PARAMS = frozenset({
    "password", "passwd", "pass", "secret", "token", "access_token", "refresh_token", "id_token",
    "client_secret", "apikey", "api_key", "key", "signature", "sig",
    "x-amz-signature", "x-amz-credential", "x-amz-security-token",
})
# A client's X-Request-Id is taken only if it looks like an id: it goes into
# logs and response headers.
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")


#: Where the request id lives in the WSGI environ.
REQUEST_ID_KEY = "cargohold.request_id"


def assign_request_id(environ: dict) -> str:
    """Give the request in ``environ`` its id: the client's ``X-Request-Id``
    when it is a plausible id (up to 128 characters of letters, digits and
    ``._:@/+=-``), else a new one (see :func:`new_request_id`).  The app's WSGI middleware
    (:class:`cargohold.metrics.MeteredApp`) does this first thing and returns
    the id in the ``X-Request-Id`` response header."""
    rid = environ.get(REQUEST_ID_KEY)
    if rid is None:
        given = environ.get("HTTP_X_REQUEST_ID", "")
        rid = environ[REQUEST_ID_KEY] = given if _CLIENT_ID.fullmatch(given) else new_request_id()
    return rid


def _fresh_sequence() -> None:
    global _prefix, _counter
    _prefix, _counter = os.urandom(8).hex() + "-", itertools.count(1)


_prefix, _counter = "", itertools.count(1)
_fresh_sequence()
os.register_at_fork(after_in_child=_fresh_sequence)  # workers never share a prefix


def new_request_id() -> str:
    """A new id, unique across processes and restarts: 16 random hex digits
    drawn once per process, a dash, and a per-process counter in hex
    (``9f86d081884c7d65-1a``).  Cheaper than a uuid4 on every request."""
    return f"{_prefix}{next(_counter):x}"


def request_parts() -> tuple:
    """``(app, environ, g)`` of the request being served: the Flask app,
    the request's WSGI environ and the app context's ``g``.  The same
    objects as ``current_app``, ``request.environ`` and ``g``, at a fraction
    of their cost, for code on the hot path of every request (events)."""
    if _cv_request is not None:
        try:
            app_ctx, req_ctx = _cv_app.get(), _cv_request.get()
            return app_ctx.app, req_ctx.request.environ, app_ctx.g
        except (LookupError, AttributeError):  # no request, or a Flask whose contexts changed
            pass
    return current_app._get_current_object(), request.environ, g._get_current_object()


def base_url(environ: dict, host: str = "") -> str:
    """The absolute URL the registry's paths hang from, as clients reach it:
    ``host`` (``http.host``) when configured, else the request's scheme and
    ``Host`` (the forwarded ones when ``http.trustedproxies`` let ProxyFix
    put them in the environ), then the path prefix (``http.prefix``, the
    environ's ``SCRIPT_NAME``).  No trailing slash."""
    prefix = environ.get("SCRIPT_NAME", "")
    if host:
        return host.rstrip("/") + prefix
    authority = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return f"{environ.get('wsgi.url_scheme', 'http')}://{authority}{prefix}"


def external_url(path: str, absolute: bool = True) -> str:
    """The URL of the app path ``path`` (``/v2/...``) for the current
    request's client, below ``http.prefix``: absolute (see :func:`base_url`),
    or with ``absolute=False`` and no ``http.host`` configured, relative to
    the server (``/registry/v2/...``), which clients resolve against the URL
    they requested, so through any proxy."""
    app, environ, _ = request_parts()
    host = app.extensions["cargohold"].config["http"]["host"]
    if not absolute and not host:
        return environ.get("SCRIPT_NAME", "") + path
    return base_url(environ, host) + path


def request_id() -> str:
    """The current request's id (see :func:`assign_request_id`)."""
    return assign_request_id(request.environ)


def current_request_id() -> str | None:
    """The id of the request being served, ``None`` outside a request."""
    if not has_request_context():
        return None
    return request.environ.get(REQUEST_ID_KEY)


def redact_query(query: str) -> str:
    """``query`` with the values of credential-like parameters
    (:data:`CREDENTIAL_PARAMS`, case-insensitive) replaced by ``***``."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(k.lower() in CREDENTIAL_PARAMS for k, _ in pairs):
        return query
    return urlencode([(k, "***" if k.lower() in CREDENTIAL_PARAMS else v) for k, v in pairs],
                     quote_via=quote, safe="/:*")


def request_info() -> dict:
    """What reporting hooks get about the current request: no credentials."""
    headers = {k: v for k, v in request.headers.items() if k.lower() not in CREDENTIAL_HEADERS}
    return {
        "id": request_id(),
        "method": request.method,
        "path": request.path,
        "route": request.url_rule.rule if request.url_rule else None,
        "endpoint": request.endpoint,
        "remote_addr": request.remote_addr,
        "user_agent": request.headers.get("User-Agent"),
        "user": getattr(g.get("grant"), "user", None),  # the authenticated name, if any
        "headers": headers,
    }
