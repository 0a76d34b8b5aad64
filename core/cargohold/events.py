"""Registry events in the reference registry's notification envelope.

An :class:`Event` is built after a change is committed (or a pull served)
and handed to ``cargohold_registry_event`` implementations, which enqueue it.
Building costs nothing when no plugin listens.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import uuid
from typing import Any

from flask import current_app, g, request

from cargohold.manifests import MANIFEST_TYPES
from cargohold.plugins import call_each
from cargohold.request_context import request_id

ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json"
ENVELOPE_MEDIA_TYPE_V1 = "application/vnd.docker.distribution.events.v1+json"

PUSH, PULL, MOUNT, DELETE = "push", "pull", "mount", "delete"


@dataclasses.dataclass
class Event:
    """One event; :meth:`to_dict` gives the reference JSON shape (fields id,
    timestamp, action, target, request, actor, source)."""

    action: str
    target: dict
    request: dict
    actor: dict
    source: dict
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = dataclasses.field(
        default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_INSTANCE_ID = str(uuid.uuid4())


def emit(action: str, repository: str, digest: str, media_type: str, size: int,
         tag: str | None = None, url: str | None = None) -> None:
    """Build an event for the current request and pass it to listeners."""
    state = current_app.extensions["cargohold"]
    if not state.pm.hook.cargohold_registry_event.get_hookimpls():
        return
    target = {
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "length": size,
        "repository": repository,
        "url": url or f"{request.host_url.rstrip('/')}/v2/{repository}/"
                      f"{'manifests' if media_type in MANIFEST_TYPES else 'blobs'}/{digest}",
    }
    if tag:
        target["tag"] = tag
    grant = getattr(g, "grant", None)
    event = Event(
        action=action,
        target=target,
        request={
            "id": request_id(),
            "addr": request.remote_addr or "",
            "host": request.host,
            "method": request.method,
            "useragent": request.headers.get("User-Agent", ""),
        },
        actor={"name": grant.user} if grant is not None and grant.user else {},
        source={"addr": f"{socket.gethostname()}:{request.host.rpartition(':')[2]}", "instanceID": _INSTANCE_ID},
    )
    call_each(state.pm, "cargohold_registry_event", event=event)
