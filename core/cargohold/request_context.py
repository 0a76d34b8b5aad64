"""What hooks and logs learn about the request being served."""

from __future__ import annotations

import uuid

from flask import g, request

# Never handed to plugins (reporters, metrics, events).
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization", "x-registry-auth")


def request_id() -> str:
    """The current request's id: the client's ``X-Request-Id``, else a new
    uuid, made on first use (most requests never need one)."""
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
    return rid


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
        "headers": headers,
    }
