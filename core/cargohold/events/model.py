"""Events in the reference registry's notification envelope.

The JSON shape is distribution's ``notifications/event.go``: ``id``,
``timestamp``, ``action``, ``target`` (``mediaType``, ``digest``, ``size``,
``length``, ``repository``, ``fromRepository``, ``url``, ``tag``),
``request`` (``id``, ``addr``, ``host``, ``method``, ``useragent``),
``actor`` (``name``) and ``source`` (``addr``, ``instanceID``).  As there,
target fields that do not apply are left out: a manifest delete carries
``digest`` and ``repository``, a tag delete ``tag`` and ``repository``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from typing import Any, Iterable

#: The envelope's media type as current distribution (3.x) sends it.
ENVELOPE_MEDIA_TYPE = "application/vnd.docker.distribution.events.v2+json"
#: The 2.x media type, for consumers that check it (``envelope: v1``).
ENVELOPE_MEDIA_TYPE_V1 = "application/vnd.docker.distribution.events.v1+json"
#: Envelope versions by the name an endpoint's config uses.
ENVELOPE_MEDIA_TYPES = {"v1": ENVELOPE_MEDIA_TYPE_V1, "v2": ENVELOPE_MEDIA_TYPE}

PUSH, PULL, MOUNT, DELETE = "push", "pull", "mount", "delete"
ACTIONS = (PUSH, PULL, MOUNT, DELETE)

#: What the reference reports as a blob's media type.
BLOB_MEDIA_TYPE = "application/octet-stream"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass
class Event:
    """One event.  ``target``, ``request``, ``actor`` and ``source`` are the
    reference's records as dicts; :meth:`to_dict` gives the JSON object and
    :meth:`from_dict` reads it back (the durable queue stores that form)."""

    action: str
    target: dict
    request: dict
    actor: dict
    source: dict
    id: str = dataclasses.field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = dataclasses.field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        # By hand: dataclasses.asdict deep-copies and costs ~50 µs per event,
        # paid on every request that emits one.
        return {
            "id": self.id, "timestamp": self.timestamp, "action": self.action,
            "target": dict(self.target), "request": dict(self.request),
            "actor": dict(self.actor), "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "Event":
        """Rebuild an event from :meth:`to_dict`'s output.  Raises
        ``ValueError`` when a field is missing or of the wrong kind."""
        try:
            fields = {f.name: doc[f.name] for f in dataclasses.fields(cls)}
        except (KeyError, TypeError) as e:
            raise ValueError(f"not an event: missing {e}") from None
        if not all(isinstance(fields[k], dict) for k in ("target", "request", "actor", "source")):
            raise ValueError("not an event: a record is not an object")
        return cls(**fields)


def make_target(repository: str, digest: str | None = None, media_type: str | None = None,
                size: int | None = None, url: str | None = None, tag: str | None = None,
                from_repository: str | None = None) -> dict[str, Any]:
    """A target record with only the fields that apply (``length`` mirrors
    ``size``, as the reference still sends both)."""
    target: dict[str, Any] = {}
    if media_type:
        target["mediaType"] = media_type
    if digest:
        target["digest"] = digest
    if size is not None:
        target["size"] = size
        target["length"] = size
    target["repository"] = repository
    if from_repository:
        target["fromRepository"] = from_repository
    if url:
        target["url"] = url
    if tag:
        target["tag"] = tag
    return target


def envelope(events: Iterable[Event]) -> bytes:
    """The request body a sink sends: ``{"events": [...]}`` as UTF-8 JSON."""
    return json.dumps({"events": [e.to_dict() for e in events]}, separators=(",", ":")).encode()
