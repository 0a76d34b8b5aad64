"""Access rules: which users and groups may do what on which repositories.

Auth providers authenticate a caller; :class:`AccessRules` then decides what
that caller (or an anonymous one) may do.  Both the htpasswd and the token
providers use it.  The rules file is YAML::

    groups:
      admins: [alice, bob]
    rules:                      # grants accumulate over all matching rules
      - repositories: ["public/*", "library/**"]
        users: [anonymous]
        actions: [pull]
      - repositories: ["**"]
        users: ["group:admins"]
        actions: ["*"]
      - registry: catalog       # registry:catalog:* (listing /v2/_catalog)
        users: ["*"]

``repositories`` are globs over repository names: ``*`` matches within one
path component (``public/*`` matches ``public/app`` but not
``public/team/app``), ``**`` across components (``library/**`` matches
``library/a`` and ``library/a/b``; ``**`` alone matches every repository).

``users`` entries are ``anonymous`` (a caller without credentials), ``*`` (any
authenticated user, not anonymous callers), a user name, or
``group:<name>`` naming a group of ``groups``.

``actions`` are ``pull``, ``push``, ``delete``, or ``*`` for all of them.
Grants accumulate: a caller may do the union of what every rule matching
the caller and the repository allows; nothing else is allowed.

A ``registry: catalog`` rule lets its users list the catalog; the catalog
still shows only repositories they may pull.  A ``registry: metrics`` rule
lets its users scrape ``/metrics`` on the main address.  Their ``actions``
default to ``["*"]``, the only one.

Errors in the file raise ``ValueError`` naming the file and the offending
rule and key, e.g. ``access.yml: rules[2].actions: unknown action 'pul'``.

:class:`WatchedAccessRules` re-reads the file when it changes, so rules
take effect without a restart.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Callable

import yaml

from cargohold.filestamp import file_stamp

if TYPE_CHECKING:
    from cargohold.auth import Access

log = logging.getLogger("cargohold.auth")

ANONYMOUS = "anonymous"
ANY_USER = "*"
GROUP_PREFIX = "group:"
ACTIONS = ("pull", "push", "delete")
ALL = "*"

_RULE_KEYS = {"repositories", "registry", "users", "actions"}
_REGISTRY_NAMES = ("catalog", "metrics")


def glob_to_regex(pattern: str) -> re.Pattern:
    """Compile a repository glob: ``**`` matches across ``/``, ``*`` within
    one path component; everything else is literal."""
    parts = []
    for i, chunk in enumerate(pattern.split("**")):
        if i:
            parts.append(".*")
        parts.append("[^/]*".join(re.escape(piece) for piece in chunk.split("*")))
    return re.compile("".join(parts) + r"\Z")


@dataclasses.dataclass(frozen=True)
class _Rule:
    resource: str  # "repository" or "registry"
    patterns: tuple[re.Pattern, ...]  # repository globs, or exact registry names
    anonymous: bool
    any_user: bool
    users: frozenset[str]
    actions: frozenset[str]

    def applies_to(self, user: str | None) -> bool:
        if user is None:
            return self.anonymous
        return self.any_user or user in self.users

    def matches(self, name: str) -> bool:
        return any(p.match(name) for p in self.patterns)


class AccessRules:
    """Rules mapping users and groups to repository globs and actions.

    Build one with :meth:`load` (a YAML file), :meth:`from_dict` or
    :meth:`allow_all_authenticated`.  Immutable and safe to share between
    requests."""

    def __init__(self, rules: list[_Rule], origin: str = "<config>"):
        self._rules = tuple(rules)
        self.origin = origin

    # -- construction ----------------------------------------------------------

    @classmethod
    def load(cls, path: str) -> "AccessRules":
        """Read a rules file.  Raises ``ValueError`` naming the file and the
        problem (unreadable, not YAML, or an invalid rule)."""
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except OSError as e:
            raise ValueError(f"{path}: cannot read access rules: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
        return cls.from_dict(data if data is not None else {}, origin=path)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "<config>") -> "AccessRules":
        """Build from the parsed file.  Raises ``ValueError`` naming
        ``origin`` and the offending key."""
        if not isinstance(data, dict):
            raise ValueError(f"{origin}: expected a mapping with 'groups' and 'rules'")
        unknown = sorted(set(data) - {"groups", "rules"})
        if unknown:
            raise ValueError(f"{origin}: {unknown[0]}: unknown key (expected 'groups' and 'rules')")
        groups = _parse_groups({} if data.get("groups") is None else data["groups"], origin)
        raw_rules = [] if data.get("rules") is None else data["rules"]
        if not isinstance(raw_rules, list):
            raise ValueError(f"{origin}: rules: expected a list of rules")
        rules = [_parse_rule(raw, groups, f"{origin}: rules[{i}]") for i, raw in enumerate(raw_rules)]
        return cls(rules, origin)

    @classmethod
    def allow_all_authenticated(cls) -> "AccessRules":
        """Every authenticated user may do everything, anonymous callers
        nothing: what a provider uses when no rules are configured."""
        return cls.from_dict(
            {"rules": [
                {"repositories": ["**"], "users": [ANY_USER], "actions": [ALL]},
                {"registry": "catalog", "users": [ANY_USER]},
            ]},
            origin="<default: all authenticated users>",
        )

    # -- decisions ---------------------------------------------------------------

    def granted(self, user: str | None, access: "Access") -> tuple[str, ...]:
        """The subset of ``access.actions`` that ``user`` (``None`` =
        anonymous) may perform on ``access.type``/``access.name``, in the
        order asked.  A rule's ``*`` grants every action; a requested ``*``
        needs a rule granting ``*``."""
        allowed: set[str] = set()
        for rule in self._rules:
            if rule.resource == access.type and rule.applies_to(user) and rule.matches(access.name):
                allowed |= rule.actions
                if ALL in allowed:
                    break
        if ALL in allowed:
            return tuple(access.actions)
        return tuple(a for a in access.actions if a in allowed)

    def may_pull(self, user: str | None, repository: str) -> bool:
        """Whether ``user`` (``None`` = anonymous) may pull ``repository``."""
        for rule in self._rules:
            if (rule.resource == "repository" and (ALL in rule.actions or "pull" in rule.actions)
                    and rule.applies_to(user) and rule.matches(repository)):
                return True
        return False

    def allows_anonymous(self) -> bool:
        """Whether any rule grants anything to anonymous callers."""
        return any(rule.anonymous for rule in self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def __repr__(self) -> str:
        return f"AccessRules({self.origin!r}, {len(self._rules)} rules)"


class WatchedAccessRules:
    """The rules of a file, re-read when it changes: checked (one ``stat``)
    at most every ``interval`` seconds, when a decision is asked for.  Same
    decisions as :class:`AccessRules`.

    The file must load at construction (``ValueError`` otherwise).  A
    changed file that does not load denies everything, logged as an error,
    until it is fixed: a half-edited rules file must not leave grants in
    place that the edit meant to remove."""

    def __init__(self, path: str, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.path = path
        self.interval = interval
        self._clock = clock
        self._stamp = file_stamp(path)
        self._rules = AccessRules.load(path)
        self._checked = clock()

    def current(self) -> AccessRules:
        """The rules in force, after re-reading the file if it changed."""
        now = self._clock()
        if now - self._checked >= self.interval:
            self._checked = now
            stamp = file_stamp(self.path)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._rules = AccessRules.load(self.path)
                except ValueError as e:
                    log.error("access rules reload failed, denying everything until fixed: %s", e)
                    self._rules = AccessRules([], origin=f"{self.path} (unreadable: denying everything)")
                else:
                    log.info("access rules reloaded from %s: %d rules", self.path, len(self._rules))
        return self._rules

    def granted(self, user: str | None, access: "Access") -> tuple[str, ...]:
        return self.current().granted(user, access)

    def may_pull(self, user: str | None, repository: str) -> bool:
        return self.current().may_pull(user, repository)

    def allows_anonymous(self) -> bool:
        return self.current().allows_anonymous()

    def __repr__(self) -> str:
        return f"WatchedAccessRules({self.path!r})"


def access_rules(path: str | None) -> "AccessRules | WatchedAccessRules":
    """What a provider configured with rules file ``path`` decides with: the
    file's rules, re-read when it changes, or with no file every
    authenticated user may do everything.  ``ValueError`` as
    :meth:`AccessRules.load`."""
    return WatchedAccessRules(path) if path else AccessRules.allow_all_authenticated()


# -- parsing -------------------------------------------------------------------


def _str_list(value: Any, where: str, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a non-empty list of {what}")
    return value


def _parse_groups(raw: Any, origin: str) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict):
        raise ValueError(f"{origin}: groups: expected a mapping of group name to a list of users")
    groups = {}
    for name, members in raw.items():
        where = f"{origin}: groups.{name}"
        if not isinstance(name, str) or not name:
            raise ValueError(f"{origin}: groups: group names must be non-empty strings")
        if members is None:
            members = []
        if isinstance(members, str) or not isinstance(members, list) or not all(
                isinstance(m, str) and m for m in members):
            raise ValueError(f"{where}: expected a list of user names")
        groups[name] = frozenset(members)
    return groups


def _parse_rule(raw: Any, groups: dict[str, frozenset[str]], where: str) -> _Rule:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with 'repositories' or 'registry', 'users' and 'actions'")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(_RULE_KEYS))})")
    if ("repositories" in raw) == ("registry" in raw):
        raise ValueError(f"{where}: give exactly one of 'repositories' (globs) or 'registry' (catalog, metrics)")

    if "registry" in raw:
        resource = "registry"
        names = _str_list(raw["registry"], f"{where}.registry", "registry resources")
        for n in names:
            if n not in _REGISTRY_NAMES:
                raise ValueError(f"{where}.registry: unknown registry resource {n!r} (expected 'catalog' or 'metrics')")
        patterns = tuple(re.compile(re.escape(n) + r"\Z") for n in names)
        actions = frozenset([ALL])
        if "actions" in raw:
            actions = frozenset(_str_list(raw["actions"], f"{where}.actions", "actions"))
            if actions != {ALL}:
                raise ValueError(f"{where}.actions: registry resources have only the action '*'")
    else:
        resource = "repository"
        globs = _str_list(raw["repositories"], f"{where}.repositories", "repository globs")
        patterns = tuple(glob_to_regex(g) for g in globs)
        if "actions" not in raw:
            raise ValueError(f"{where}.actions: required (pull, push, delete or *)")
        actions = frozenset(_str_list(raw["actions"], f"{where}.actions", "actions"))
        for a in sorted(actions):
            if a not in ACTIONS and a != ALL:
                raise ValueError(f"{where}.actions: unknown action {a!r} (expected pull, push, delete or *)")

    if "users" not in raw:
        raise ValueError(f"{where}.users: required (anonymous, *, a user name or group:<name>)")
    anonymous = any_user = False
    users: set[str] = set()
    for entry in _str_list(raw["users"], f"{where}.users", "users"):
        if entry == ANONYMOUS:
            anonymous = True
        elif entry == ANY_USER:
            any_user = True
        elif entry.startswith(GROUP_PREFIX):
            group = entry[len(GROUP_PREFIX):]
            if group not in groups:
                raise ValueError(f"{where}.users: unknown group {group!r} (define it under 'groups')")
            users |= groups[group]
        else:
            users.add(entry)
    return _Rule(resource, patterns, anonymous, any_user, frozenset(users), actions)
