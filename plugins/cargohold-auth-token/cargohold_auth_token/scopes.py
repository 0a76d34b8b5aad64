"""The token spec's scope grammar and access sets.

A scope is ``type:name:action[,action...]``; several are separated by
spaces.  The name may hold one ``:`` (a registry host's port), so the type is
everything before the first ``:`` and the actions everything after the last.
"""

from __future__ import annotations

import re

from cargohold.auth import Access

_TYPE = re.compile(r"[a-z]+(?:\([a-z]+\))?")  # e.g. docker's "repository(plugin)"
_ACTION = re.compile(r"[a-z]+|\*")
_NAME = re.compile(r"[A-Za-z0-9._\-/:]+")


def parse_scope(text: str) -> Access:
    """One resource scope as an :class:`Access`; ``ValueError`` saying what is
    wrong otherwise."""
    kind, sep, rest = text.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not (sep and sep2) or not _TYPE.fullmatch(kind) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid scope {text[:200]!r}: expected type:name:actions")
    parsed = tuple(dict.fromkeys(a for a in actions.split(",") if a))
    if not parsed or not all(_ACTION.fullmatch(a) for a in parsed):
        raise ValueError(f"invalid scope {text[:200]!r}: actions must be lower-case words or '*'")
    return Access(kind, name, parsed)


def parse_scopes(values: list[str]) -> list[Access]:
    """Every scope in ``values``, each of which may hold several separated by
    spaces (the OAuth2 form), merged per resource in order of appearance."""
    merged: dict[tuple[str, str], list[str]] = {}
    for value in values:
        for item in value.split():
            access = parse_scope(item)
            actions = merged.setdefault((access.type, access.name), [])
            actions.extend(a for a in access.actions if a not in actions)
    return [Access(kind, name, tuple(actions)) for (kind, name), actions in merged.items()]


def format_scopes(access: list[Access]) -> str:
    """The scope parameter for ``access``: items separated by spaces."""
    return " ".join(a.scope() for a in access)


class AccessSet:
    """What a token allows: resource -> actions.  ``*`` allows every action
    on its resource (as in the reference registry)."""

    def __init__(self, items: list[Access] = ()):
        self._actions: dict[tuple[str, str], set[str]] = {}
        for item in items:
            self._actions.setdefault((item.type, item.name), set()).update(item.actions)

    def allows(self, kind: str, name: str, action: str) -> bool:
        actions = self._actions.get((kind, name), ())
        return "*" in actions or action in actions

    def covers(self, access: Access) -> bool:
        return all(self.allows(access.type, access.name, action) for action in access.actions)

    def may_pull(self, repository: str) -> bool:
        return self.allows("repository", repository, "pull")

    def items(self) -> list[Access]:
        return [Access(kind, name, tuple(sorted(actions))) for (kind, name), actions in self._actions.items()]
