"""Events in the reference registry's notification envelope.

The JSON shape is distribution's ``notifications/event.go``: ``id``,
``timestamp``, ``action``, ``target`` (``mediaType``, ``digest``, ``size``,
``length``, ``repository``, ``fromRepository``, ``url``, ``tag``),
``request`` (``id``, ``addr``, ``host``, ``method``, ``useragent``),
``actor`` (``name``) and ``source`` (``addr``, ``instanceID``).  As there,
target fields that do not apply are left out: a manifest delete carries
``digest`` and ``repository``, a tag delete ``tag`` and ``repository``.

An :class:`Event` is built on the request path of every push, pull, mount
and delete, so it is a flat tuple of its fields and derives the nested
records and the timestamp's text only when asked (:meth:`Event.to_dict`);
the durable queue stores the flat form (:meth:`Event.to_record`).
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import time
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


def _fresh_ids() -> None:
    global _id_prefix, _id_counter
    r = os.urandom(10).hex()
    variant = "89ab"[int(r[16], 16) & 3]
    _id_prefix, _id_counter = f"{r[:8]}-{r[8:12]}-4{r[13:16]}-{variant}{r[17:20]}-", itertools.count(1)


_id_prefix, _id_counter = "", itertools.count(1)
_fresh_ids()
os.register_at_fork(after_in_child=_fresh_ids)  # workers never share a prefix


def new_event_id() -> str:
    """A new event id in UUID form (version 4 layout), unique across
    processes and restarts: 74 random bits drawn once per process, then a
    per-process counter.  A tenth of the cost of ``uuid.uuid4()``."""
    return f"{_id_prefix}{next(_id_counter):012x}"


def rfc3339(time_ns: int) -> str:
    """``time_ns`` (ns since the epoch) as Go's RFC 3339 with nanoseconds,
    in UTC, trailing zeros dropped, as the reference's timestamps are."""
    seconds, fraction = divmod(time_ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{text}.{fraction:09d}".rstrip("0").rstrip(".") + "Z"


_FIELDS = ("id", "time_ns", "action", "repository", "digest", "media_type", "size", "tag", "url",
           "from_repository", "request_id", "addr", "host", "method", "useragent", "actor_name",
           "source_addr", "instance_id")


class Event(tuple):
    """One registry event, with the reference's fields held flat.

    ``action`` is one of :data:`ACTIONS`; ``repository`` to
    ``from_repository`` make the target, ``request_id`` to ``useragent``
    the request, ``actor_name`` the actor (``None`` when anonymous),
    ``source_addr`` and ``instance_id`` the source.  Fields that do not
    apply are ``None``.  ``id`` and ``time_ns`` (ns since the epoch) are
    drawn when not given.  :attr:`target`, :attr:`request`, :attr:`actor`,
    :attr:`source` and :attr:`timestamp` give the envelope's records;
    :meth:`to_dict` the whole JSON object.  Events are immutable and
    compare equal when all their fields do.

    An event is built on the request path of every push, pull, mount and
    delete, so it is a tuple of its fields in :meth:`to_record`'s order:
    built in one step, and written to the durable queue as it is.
    """

    __slots__ = ()

    def __new__(cls, action: str, repository: str, digest: str | None = None, media_type: str | None = None,
                size: int | None = None, tag: str | None = None, url: str | None = None,
                from_repository: str | None = None, *, request_id: str = "", addr: str = "", host: str = "",
                method: str = "", useragent: str = "", actor_name: str | None = None, source_addr: str = "",
                instance_id: str = "", id: str | None = None, time_ns: int | None = None):
        return tuple.__new__(cls, (
            id or new_event_id(), time.time_ns() if time_ns is None else time_ns, action, repository, digest,
            media_type, size, tag, url, from_repository, request_id, addr, host, method, useragent, actor_name,
            source_addr, instance_id))

    # The fields, by name (``operator.itemgetter``: as cheap as a slot).
    id, time_ns, action, repository, digest, media_type, size, tag, url, from_repository, request_id, addr, \
        host, method, useragent, actor_name, source_addr, instance_id = (
            property(operator.itemgetter(i), doc=f"The event's ``{name}``.") for i, name in enumerate(_FIELDS))

    @property
    def timestamp(self) -> str:
        return rfc3339(self.time_ns)

    @property
    def target(self) -> dict[str, Any]:
        """The target record, with only the fields that apply (``length``
        mirrors ``size``, as the reference still sends both)."""
        target: dict[str, Any] = {}
        if self.media_type:
            target["mediaType"] = self.media_type
        if self.digest:
            target["digest"] = self.digest
        if self.size is not None:
            target["size"] = target["length"] = self.size
        target["repository"] = self.repository
        if self.from_repository:
            target["fromRepository"] = self.from_repository
        if self.url:
            target["url"] = self.url
        if self.tag:
            target["tag"] = self.tag
        return target

    @property
    def request(self) -> dict[str, str]:
        return {"id": self.request_id, "addr": self.addr, "host": self.host, "method": self.method,
                "useragent": self.useragent}

    @property
    def actor(self) -> dict[str, str]:
        return {"name": self.actor_name} if self.actor_name else {}

    @property
    def source(self) -> dict[str, str]:
        return {"addr": self.source_addr, "instanceID": self.instance_id}

    def to_dict(self) -> dict[str, Any]:
        """The event as the envelope's JSON object."""
        return {"id": self.id, "timestamp": self.timestamp, "action": self.action, "target": self.target,
                "request": self.request, "actor": self.actor, "source": self.source}

    def to_record(self) -> list:
        """The fields as a flat JSON array (what the durable queue stores:
        a fraction of the cost of encoding :meth:`to_dict`)."""
        return list(self)

    @classmethod
    def from_record(cls, record: Any) -> "Event":
        """Rebuild an event from :meth:`to_record`'s output.  Raises
        ``ValueError`` when it is not one."""
        if not isinstance(record, list) or len(record) != len(_FIELDS):
            raise ValueError("not an event record")
        (id_, time_ns, action, repository, digest, media_type, size, tag, url, from_repository, request_id,
         addr, host, method, useragent, actor_name, source_addr, instance_id) = record
        texts = (id_, action, repository, request_id, addr, host, method, useragent, source_addr, instance_id)
        optional = (digest, media_type, tag, url, from_repository, actor_name)
        if (not all(isinstance(v, str) for v in texts) or not all(v is None or isinstance(v, str) for v in optional)
                or type(time_ns) is not int or not (size is None or type(size) is int) or action not in ACTIONS
                or not id_):
            raise ValueError("not an event record: a field has the wrong type")
        return tuple.__new__(cls, record)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return tuple.__ne__(self, other)

    __hash__ = tuple.__hash__

    def __reduce__(self):
        return tuple.__new__, (Event, tuple(self))

    def __repr__(self) -> str:
        return f"Event({self.action} {self.repository} {self.digest or self.tag} id={self.id})"


def fields_to_event(fields: tuple) -> Event:
    """The event whose fields are ``fields``, in :meth:`Event.to_record`'s
    order, unchecked: for the core's request path, which builds the tuple
    itself (a tenth of the cost of the keyword constructor)."""
    return tuple.__new__(Event, fields)


def envelope(events: Iterable[Event]) -> bytes:
    """The request body a sink sends: ``{"events": [...]}`` as UTF-8 JSON."""
    return json.dumps({"events": [e.to_dict() for e in events]}, separators=(",", ":")).encode()
