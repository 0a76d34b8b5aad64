"""What every ``/v2/`` handler shares: the blueprint, access mapping and
authorization, request-body streaming and small helpers."""

from __future__ import annotations

from typing import Iterator

from flask import Blueprint, Response, current_app, g, request

from cargohold.auth import Access
from cargohold.auth import authorize as authorize_request
from cargohold.errors import BlobUploadInvalid, SizeInvalid, Unsupported
from cargohold.reference import check_name
from cargohold.request_context import external_url

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
BODY_CHUNK = 1 << 20

v2 = Blueprint("v2", __name__, url_prefix="/v2")


def state():
    """The app's :class:`cargohold.app.RegistryState`."""
    return current_app.extensions["cargohold"]


def registry():
    return current_app.extensions["cargohold"].registry


# -- authorization -------------------------------------------------------------

_METHOD_ACTIONS = {
    "GET": ("pull",),
    "HEAD": ("pull",),
    "POST": ("pull", "push"),
    "PUT": ("pull", "push"),
    "PATCH": ("pull", "push"),
    "DELETE": ("delete",),
}


def requested_access() -> list[Access]:
    """Map the current request to what it needs, per the Docker token scope
    grammar.  Unknown endpoints need nothing here (they 404 anyway)."""
    endpoint = request.endpoint or ""
    if endpoint == "v2.catalog":
        return [Access("registry", "catalog", ("*",))]
    name = (request.view_args or {}).get("name")
    if name is None:
        return []
    access = [Access("repository", name, _METHOD_ACTIONS.get(request.method, ("pull",)))]
    if endpoint == "v2.start_upload" and request.args.get("mount") and request.args.get("from"):
        source = request.args["from"]
        if source != name:
            access.append(Access("repository", source, ("pull",)))
    return access


@v2.before_request
def authorize() -> None:
    """Validate names, then ask the auth provider.  Fails closed: anything but
    a :class:`Grant` denies."""
    args = request.view_args or {}
    if "name" in args:
        check_name(args["name"])
    if request.endpoint == "v2.start_upload" and request.args.get("from"):
        check_name(request.args["from"])
    g.grant = authorize_request(state().auth, request, requested_access())


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@v2.before_request
def refuse_writes_when_read_only() -> None:
    """In read-only mode (``storage.maintenance.readonly.enabled``, switched
    live by a configuration reload) every write -- upload ``POST``/``PATCH``/
    ``PUT``, manifest ``PUT``, deletes, upload cancel -- gets 405
    ``UNSUPPORTED``, after authorization as in the reference registry; the
    ``Allow`` header names the methods that still work there."""
    if request.method not in _WRITES or not state().config["storage"]["maintenance"]["readonly"]["enabled"]:
        return
    allowed = current_app.url_map.bind_to_environ(request.environ).allowed_methods()
    raise Unsupported(
        "the registry is in read-only mode: writes are refused, pulls keep working "
        "(storage.maintenance.readonly.enabled)",
        detail={"method": request.method, "readonly": True},
        headers={"Allow": ", ".join(sorted(m for m in allowed if m not in _WRITES))})


def location(path: str) -> str:
    """A ``Location`` or ``Link`` URL for the app path ``path``, below
    ``http.prefix``: absolute when ``http.host`` is configured, or built from
    the trusted proxy's ``X-Forwarded-Proto``/``-Host`` with
    ``http.trustedproxies``; else relative, which clients resolve against
    the URL they requested (so through any proxy)."""
    return external_url(path, absolute=bool(state().config["http"].get("trustedproxies")))


def require_deletes() -> None:
    if not state().config["storage"]["delete"]["enabled"]:
        raise Unsupported("deletes are disabled on this registry (storage.delete.enabled)")


# -- request bodies ------------------------------------------------------------


def content_length() -> int | None:
    raw = request.headers.get("Content-Length")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise SizeInvalid("invalid Content-Length", detail={"Content-Length": raw[:50]})
    if value < 0:
        raise SizeInvalid("invalid Content-Length", detail={"Content-Length": raw[:50]})
    return value


def body_chunks() -> Iterator[bytes]:
    """Stream the request body in chunks, never holding it whole.  Works for
    ``Content-Length`` and chunked transfer encoding alike.  A body that
    ends early or is malformed raises a 400 error while reading
    (:mod:`cargohold.client_input`)."""
    stream = request.stream
    while True:
        chunk = stream.read(BODY_CHUNK)
        if not chunk:
            return
        yield chunk


def read_body(limit: int) -> bytes:
    """The whole request body, at most ``limit + 1`` bytes (so the caller
    can tell it is over ``limit``).  A body shorter than its
    ``Content-Length`` is SIZE_INVALID, however the server reports it."""
    length = content_length()
    stream, parts, received = request.stream, [], 0
    while received <= limit:  # a read may return less than asked before the end
        chunk = stream.read(limit + 1 - received)
        if not chunk:
            break
        parts.append(chunk)
        received += len(chunk)
    raw = b"".join(parts)
    if length is not None and len(raw) < min(length, limit + 1):
        raise SizeInvalid(f"the request body ended after {len(raw)} of the {length} bytes its "
                          "Content-Length declared: the client stopped sending",
                          detail={"received": len(raw), "declared": length})
    return raw


def parse_content_range(value: str | None) -> tuple[int, int] | None:
    """``Content-Range: <start>-<end>`` (inclusive) on a chunk; the spec's
    form, with an optional ``bytes `` prefix and ``/total`` suffix tolerated."""
    if not value:
        return None
    v = value.strip()
    if v.startswith("bytes"):
        v = v[5:].strip().lstrip("=").strip()
    v = v.split("/")[0]
    start_s, sep, end_s = v.partition("-")
    try:
        if not sep:
            raise ValueError
        start, end = int(start_s), int(end_s)
    except ValueError:
        raise BlobUploadInvalid("invalid Content-Range", detail={"Content-Range": value[:100]})
    if start < 0 or end < start - 1:
        raise BlobUploadInvalid("invalid Content-Range", detail={"Content-Range": value[:100]})
    return start, end


def empty(status: int, headers: dict | None = None) -> Response:
    resp = Response(b"", status=status)
    del resp.headers["Content-Type"]
    resp.headers["Content-Length"] = "0"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp
