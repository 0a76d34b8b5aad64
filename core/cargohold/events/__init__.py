"""Registry events and their durable delivery.

* :mod:`cargohold.events.model`: the :class:`Event` in the reference envelope;
* :mod:`cargohold.events.queue`: one endpoint's durable on-disk queue;
* :mod:`cargohold.events.endpoints`: ``notifications.endpoints`` entries,
  their filter and retry schedule;
* :mod:`cargohold.events.dispatch`: per endpoint, filter → queue → delivery
  with capped exponential backoff and dead letters.

:func:`emit` builds an event for the current request after the change is
committed (or the pull served) and hands it to ``cargohold_registry_event``
implementations, which enqueue it.  Building costs nothing when no plugin
listens.
"""

from __future__ import annotations

import functools
import socket
import uuid
from time import time_ns

from cargohold.events.model import (
    ACTIONS, BLOB_MEDIA_TYPE, DELETE, ENVELOPE_MEDIA_TYPE, ENVELOPE_MEDIA_TYPE_V1, ENVELOPE_MEDIA_TYPES, MOUNT,
    PULL, PUSH, Event, envelope, fields_to_event, new_event_id,
)
from cargohold.manifests import MANIFEST_TYPES
from cargohold.plugins import call_each
from cargohold.request_context import assign_request_id, base_url, request_parts

__all__ = [
    "ACTIONS", "BLOB_MEDIA_TYPE", "DELETE", "ENVELOPE_MEDIA_TYPE", "ENVELOPE_MEDIA_TYPE_V1",
    "ENVELOPE_MEDIA_TYPES", "MOUNT", "PULL", "PUSH", "SOURCE_URL_KEY", "Event", "emit", "emit_from", "envelope",
]

_INSTANCE_ID = str(uuid.uuid4())

#: WSGI environ key: where the content of this request's pull came from when
#: it is not this registry (the pull-through cache's upstream URL); the
#: event's ``target.url`` then names it.
SOURCE_URL_KEY = "cargohold.source_url"


@functools.lru_cache(maxsize=16)
def _source_addr(port: str) -> str:
    """The event's ``source.addr``: this host's name and the port serving."""
    return f"{socket.gethostname()}:{port}"


def emit(action: str, repository: str, digest: str | None = None, media_type: str | None = None,
         size: int | None = None, tag: str | None = None, url: str | None = None,
         from_repository: str | None = None) -> None:
    """Build an event for the current request and pass it to listeners.

    Pass what the reference sends for the action: pushes, pulls and mounts
    carry digest, media type and size (the URL is derived: ``manifests/`` for
    manifest media types, else ``blobs/``; or the request's
    :data:`SOURCE_URL_KEY`); a manifest or blob delete only the
    digest; a tag delete only the tag.
    """
    app, environ, app_g = request_parts()
    state = app.extensions["cargohold"]
    pm = state.pm
    if not pm.hook.cargohold_registry_event.get_hookimpls():
        return
    # From the WSGI environ rather than request.host / host_url, which parse
    # and re-encode the URL on first use and cost more than the rest of the
    # event (ProxyFix, when configured, has put the forwarded host there).
    port = environ.get("SERVER_PORT", "")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{port}"
    if url is None and digest and action != DELETE:
        url = environ.get(SOURCE_URL_KEY)
        if url is None:
            kind = "manifests" if media_type in MANIFEST_TYPES else "blobs"
            base = base_url(environ, state.config["http"]["host"])
            url = f"{base}/v2/{repository}/{kind}/{digest}"
    grant = app_g.get("grant")
    event = fields_to_event((
        new_event_id(), time_ns(), action, repository, digest, media_type, size, tag, url, from_repository,
        assign_request_id(environ), environ.get("REMOTE_ADDR") or "", host, environ.get("REQUEST_METHOD", ""),
        environ.get("HTTP_USER_AGENT", ""), grant.user if grant is not None else None, _source_addr(port),
        _INSTANCE_ID,
    ))
    call_each(pm, "cargohold_registry_event", event=event)


def emit_from(pm, action: str, repository: str, digest: str | None = None, agent: str = "cargohold",
              media_type: str | None = None, size: int | None = None, tag: str | None = None) -> None:
    """Build an event that no request caused (the garbage collector's and
    retention's deletes) and pass it to the ``cargohold_registry_event``
    listeners of ``pm``.  As with :func:`emit`, a manifest delete carries
    the digest, a tag delete only the tag.  Request fields are empty but for
    the user agent, ``agent``; the source is this host."""
    if not pm.hook.cargohold_registry_event.get_hookimpls():
        return
    host = socket.gethostname()
    event = fields_to_event((
        new_event_id(), time_ns(), action, repository, digest, media_type, size, tag, None, None,
        new_event_id(), "", host, "", agent, None, host, _INSTANCE_ID,
    ))
    call_each(pm, "cargohold_registry_event", event=event)
