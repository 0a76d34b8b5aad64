"""cargohold-policy-immutable: tags that cannot be moved or deleted once pushed.

Configuration::

    policy:
      immutable:
        rules:
          - name: releases              # optional, named in refusals (default: rule-<n>)
            repositories: "team-a/*"    # glob on the repository name (default "*")
            tags: ["semver", "release-*"]

``tags`` holds globs (:func:`fnmatch.fnmatchcase`: ``*``, ``?``, ``[...]``)
and the shortcut ``semver``: ``MAJOR.MINOR.PATCH`` with an optional ``v``
and ``-prerelease`` (``1.2.3``, ``v1.2.3-rc.1``).  Once a tag matching a
rule of its repository exists, the registry refuses with 403 ``DENIED``,
naming the rule:

* pointing it at another manifest (pushing the identical manifest again is
  allowed: the tag does not move);
* deleting it;
* deleting the manifest it points at (which would delete the tag).

The garbage collector never removes a tagged manifest, so it needs no rule.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re

from cargohold import hookimpl
from cargohold.config import ConfigError, check_section
from cargohold.errors import Denied

PLUGIN_NAME = "policy-immutable.rules"

#: The ``semver`` shortcut (tags cannot hold ``+``, so no build metadata).
SEMVER = re.compile(r"v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?")

RULE_SCHEMA = {"name": str, "repositories": str, "tags": list}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One rule: the repositories it covers and its tag patterns."""

    name: str
    repositories: str
    patterns: tuple[str, ...]

    def covers(self, repository: str) -> bool:
        return fnmatch.fnmatchcase(repository, self.repositories)

    def pattern_for(self, tag: str) -> str | None:
        """The first pattern ``tag`` matches, or ``None``."""
        for pattern in self.patterns:
            if SEMVER.fullmatch(tag) if pattern == "semver" else fnmatch.fnmatchcase(tag, pattern):
                return pattern
        return None


def parse_rules(section: dict | None) -> list[Rule]:
    """The rules of ``policy.immutable``; :class:`ConfigError` naming a bad key."""
    rules = []
    for i, entry in enumerate((section or {}).get("rules") or []):
        path = f"policy.immutable.rules[{i}]"
        entry = check_section(entry, RULE_SCHEMA, path)
        patterns = entry.get("tags")
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ConfigError(f"{path}.tags: expected a non-empty list of tag patterns")
        rules.append(Rule(entry.get("name") or f"rule-{i}", entry.get("repositories") or "*", tuple(patterns)))
    return rules


class ImmutableTags:
    """The rules of one app, registered as a plugin of its manager when
    rules are configured (so a registry without rules pays nothing)."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules

    def protecting(self, repository: str, tag: str) -> tuple[Rule, str] | None:
        """The rule and pattern making ``tag`` of ``repository`` immutable, if any."""
        for rule in self.rules:
            if rule.covers(repository):
                pattern = rule.pattern_for(tag)
                if pattern is not None:
                    return rule, pattern
        return None

    @hookimpl
    def cargohold_before_tag_put(self, repository, tag, old_digest, new_digest):
        if old_digest is None or old_digest == new_digest:
            return
        found = self.protecting(repository, tag)
        if found is not None:
            _refuse("it cannot be moved to another manifest", repository, tag, *found)

    @hookimpl
    def cargohold_before_delete(self, repository, kind, tags):
        for tag in tags:
            found = self.protecting(repository, tag)
            if found is not None:
                what = "it cannot be deleted" if kind == "tag" else "the manifest it points at cannot be deleted"
                _refuse(what, repository, tag, *found)


def _refuse(what: str, repository: str, tag: str, rule: Rule, pattern: str) -> None:
    raise Denied(f"tag {tag!r} is immutable (rule {rule.name!r}, pattern {pattern!r}): {what}",
                 detail={"repository": repository, "tag": tag, "rule": rule.name, "pattern": pattern})


@hookimpl
def cargohold_config_schema():
    return {"policy.immutable": {"rules": list}}


@hookimpl
def cargohold_startup(app):
    """With rules configured, put them in force: a plugin of this app's manager."""
    rules = parse_rules(app.config["CARGOHOLD"].get("policy", {}).get("immutable"))
    if rules:
        app.extensions["cargohold"].pm.register(ImmutableTags(rules), name=PLUGIN_NAME)
