"""Events in the reference registry's notification envelope.

The JSON shape is distribution's ``notifications/event.go``: ``id``,
``timestamp``, ``action``, ``target`` (``mediaType``, ``digest``, ``size``,
``length``, ``repository``, ``fromRepository``, ``url``, ``tag``),
``request`` (``id``, ``addr``, ``host``, ``method``, ``useragent``),
``actor`` (``name``) and ``source`` (``addr``, ``instanceID``).  As there,
target fields that do not apply are left out: a manifest delete carries
``digest`` and ``repository``, a tag delete ``tag`` and ``repository``.

An :class:`Event` is built on the request path of every push, pull, mount
and delete, so it holds its fields flat and derives the nested records and
the timestamp's text only when asked (:meth:`Event.to_dict`); the durable
queue stores the flat form (:meth:`Event.to_record`).
"""

from __future__ import annotations

import itertools
import json
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


class Event:
    """One registry event, with the reference's fields held flat.

    ``action`` is one of :data:`ACTIONS`; ``repository`` to
    ``from_repository`` make the target, ``request_id`` to ``useragent``
    the request, ``actor_name`` the actor (``None`` when anonymous),
    ``source_addr`` and ``instance_id`` the source.  Fields that do not
    apply are ``None``.  ``id`` and ``time_ns`` (ns since the epoch) are
    drawn when not given.  :attr:`target`, :attr:`request`, :attr:`actor`,
    :attr:`source` and :attr:`timestamp` give the envelope's records;
    :meth:`to_dict` the whole JSON object.  Events compare equal when all
    their fields do.
    """

    __slots__ = ("id", "time_ns", "action", "repository", "digest", "media_type", "size", "tag", "url",
                 "from_repository", "request_id", "addr", "host", "method", "useragent", "actor_name",
                 "source_addr", "instance_id")

    def __init__(self, action: str, repository: str, digest: str | None = None, media_type: str | None = None,
                 size: int | None = None, tag: str | None = None, url: str | None = None,
                 from_repository: str | None = None, *, request_id: str = "", addr: str = "", host: str = "",
                 method: str = "", useragent: str = "", actor_name: str | None = None, source_addr: str = "",
                 instance_id: str = "", id: str | None = None, time_ns: int | None = None):
        self.id = id or new_event_id()
        self.time_ns = time.time_ns() if time_ns is None else time_ns
        self.action, self.repository, self.digest, self.media_type = action, repository, digest, media_type
        self.size, self.tag, self.url, self.from_repository = size, tag, url, from_repository
        self.request_id, self.addr, self.host, self.method, self.useragent = request_id, addr, host, method, useragent
        self.actor_name, self.source_addr, self.instance_id = actor_name, source_addr, instance_id

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
        return [self.id, self.time_ns, self.action, self.repository, self.digest, self.media_type, self.size,
                self.tag, self.url, self.from_repository, self.request_id, self.addr, self.host, self.method,
                self.useragent, self.actor_name, self.source_addr, self.instance_id]

    @classmethod
    def from_record(cls, record: Any) -> "Event":
        """Rebuild an event from :meth:`to_record`'s output.  Raises
        ``ValueError`` when it is not one."""
        if not isinstance(record, list) or len(record) != len(cls.__slots__):
            raise ValueError("not an event record")
        (id_, time_ns, action, repository, digest, media_type, size, tag, url, from_repository, request_id,
         addr, host, method, useragent, actor_name, source_addr, instance_id) = record
        texts = (id_, action, repository, request_id, addr, host, method, useragent, source_addr, instance_id)
        optional = (digest, media_type, tag, url, from_repository, actor_name)
        if (not all(isinstance(v, str) for v in texts) or not all(v is None or isinstance(v, str) for v in optional)
                or type(time_ns) is not int or not (size is None or type(size) is int) or action not in ACTIONS):
            raise ValueError("not an event record: a field has the wrong type")
        return cls(action, repository, digest, media_type, size, tag, url, from_repository, request_id=request_id,
                   addr=addr, host=host, method=method, useragent=useragent, actor_name=actor_name,
                   source_addr=source_addr, instance_id=instance_id, id=id_, time_ns=time_ns)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self.to_record() == other.to_record()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Event({self.action} {self.repository} {self.digest or self.tag} id={self.id})"


def envelope(events: Iterable[Event]) -> bytes:
    """The request body a sink sends: ``{"events": [...]}`` as UTF-8 JSON."""
    return json.dumps({"events": [e.to_dict() for e in events]}, separators=(",", ":")).encode()
