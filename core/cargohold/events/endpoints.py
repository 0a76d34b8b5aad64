"""``notifications.endpoints`` entries: what the core reads from each one,
which events it wants, and when to retry it.

An entry has the reference registry's keys.  The core owns those about
filtering, queueing and retrying (:data:`ENDPOINT_SCHEMA`); every other key
(``url``, ``headers``, ``timeout``, ...) belongs to the sink named by
``type`` and is handed to its factory, which rejects what it does not know.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Collection

from cargohold.config import ConfigError, Duration, check_section
from cargohold.events.model import ACTIONS, Event

#: Keys of an endpoint entry the core reads; the rest go to the sink.
ENDPOINT_SCHEMA: dict[str, Any] = {
    "name": str,
    "type": str,
    "disabled": bool,
    "threshold": int,
    "backoff": Duration,
    "maxbackoff": Duration,
    "maxattempts": int,
    "ignoredmediatypes": list,
    "ignore": {"mediatypes": list, "actions": list},
}

DEFAULTS: dict[str, Any] = {
    "disabled": False,
    "threshold": 3,
    "backoff": 1.0,
    "maxbackoff": 300.0,
    "maxattempts": 0,
}

# The name is a directory name under notifications.queuedir.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclasses.dataclass
class Endpoint:
    """One validated endpoint: its name, sink type, filter and retry policy.
    ``sink_params`` are the keys left for the sink (plus ``name``)."""

    name: str
    type: str
    disabled: bool
    threshold: int
    backoff: float
    maxbackoff: float
    maxattempts: int
    ignored_media_types: frozenset[str]
    ignored_actions: frozenset[str]
    sink_params: dict

    @property
    def filters(self) -> bool:
        """Whether any event is ignored (else :meth:`accepts` is always true)."""
        return bool(self.ignored_actions or self.ignored_media_types)

    def accepts(self, event: Event) -> bool:
        """Whether ``event`` passes the ``ignore`` filters.  Events without a
        media type (deletes) are only filtered by action, as in the reference."""
        if event.action in self.ignored_actions:
            return False
        return event.media_type not in self.ignored_media_types

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failed attempts:
        ``backoff`` until the ``threshold``-th failure, then doubling with each
        further one, never more than ``maxbackoff``."""
        if failures <= 0:
            return 0.0
        exponent = max(0, failures - self.threshold)
        return min(self.backoff * (2 ** min(exponent, 62)), self.maxbackoff)


def parse_endpoints(entries: list, sink_types: Collection[str]) -> list[Endpoint]:
    """Validate ``notifications.endpoints`` against the installed
    ``sink_types``.  Raises :class:`ConfigError` listing every problem, each
    naming ``notifications.endpoints[<i>].<key>``."""
    problems: list[str] = []
    endpoints: list[Endpoint] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"notifications.endpoints[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected a mapping with name, url, ..., got {entry!r}")
            continue
        core = {k: v for k, v in entry.items() if k in ENDPOINT_SCHEMA}
        try:
            values = {**DEFAULTS, **{k: v for k, v in check_section(core, ENDPOINT_SCHEMA, where).items()
                                     if v is not None and k in core}}
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        name = values.get("name")
        if not name:
            problems.append(f"{where}.name: required (it names the endpoint's queue directory)")
            continue
        if not _NAME.fullmatch(name):
            problems.append(f"{where}.name: use letters, digits, '.', '_' and '-' (at most 64), got {name!r}")
            continue
        if name in seen:
            problems.append(f"{where}.name: {name!r} is used by another endpoint")
            continue
        seen.add(name)
        if "type" not in values:
            # The reference's entries have no type: they are all one kind of
            # sink, so the one installed serves them.
            if len(sink_types) != 1:
                problems.append(f"{where}.type: required when {len(sink_types)} notification sinks are "
                                f"installed (available: {', '.join(sorted(sink_types)) or 'none'})")
                continue
            values["type"] = next(iter(sink_types))
        if values["type"] not in sink_types:
            problems.append(f"{where}.type: no installed plugin offers a notification sink named "
                            f"{values['type']!r} (available: {', '.join(sorted(sink_types)) or 'none'})")
            continue
        for key in ("threshold", "maxattempts"):
            if values[key] < (1 if key == "threshold" else 0):
                problems.append(f"{where}.{key}: must be at least {1 if key == 'threshold' else 0}, got {values[key]}")
        if values["backoff"] <= 0:
            problems.append(f"{where}.backoff: must be more than 0")
        if values["maxbackoff"] < values["backoff"]:
            problems.append(f"{where}.maxbackoff: must be at least backoff ({values['backoff']}s)")
        ignore = values.get("ignore") or {}
        actions = [str(a).lower() for a in ignore.get("actions") or []]
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown:
            problems.append(f"{where}.ignore.actions: unknown action(s) {', '.join(unknown)} "
                            f"(expected {', '.join(ACTIONS)})")
        media_types = {str(m) for m in (values.get("ignoredmediatypes") or [])}
        media_types |= {str(m) for m in ignore.get("mediatypes") or []}
        sink_params = {k: v for k, v in entry.items() if k not in ENDPOINT_SCHEMA}
        sink_params["name"] = name
        endpoints.append(Endpoint(
            name=name, type=values["type"], disabled=values["disabled"], threshold=values["threshold"],
            backoff=values["backoff"], maxbackoff=values["maxbackoff"], maxattempts=values["maxattempts"],
            ignored_media_types=frozenset(media_types), ignored_actions=frozenset(actions),
            sink_params=sink_params,
        ))
    if problems:
        raise ConfigError(*problems)
    return endpoints


def make_sink(endpoint: Endpoint, index: int, factory: Callable[[dict], Any]) -> Any:
    """``factory(endpoint.sink_params)``; a ``ValueError`` or ``ConfigError``
    from it (naming a key) becomes a :class:`ConfigError` naming the entry."""
    where = f"notifications.endpoints[{index}]"
    try:
        return factory(dict(endpoint.sink_params))
    except ConfigError as e:
        raise ConfigError(*(_locate(p, where) for p in e.problems)) from e
    except ValueError as e:
        raise ConfigError(_locate(str(e), where)) from e


def _locate(problem: str, where: str) -> str:
    """Put the entry's path in front of the key a sink's problem names."""
    m = re.match(r"unknown key '([^']*)'", problem)
    if m:
        return f"unknown key '{where}.{m.group(1)}'{problem[m.end():]}"
    return f"{where}.{problem}"
