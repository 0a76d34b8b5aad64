"""Retention rules and what they select: pure functions over a repository's
tags and manifests, no storage.

A **tag rule** (``tags`` set) governs the tags of the repositories matching
``repositories`` whose names match ``tags``; each tag is governed by the
first tag rule that matches it, and a tag no rule matches is kept.  Within
one rule and repository, tags are ordered newest first by push time (ties:
the lexically greater tag first); the first ``keep`` are kept, and of the
rest those pushed more than ``olderthan`` ago (all of them without
``olderthan``) are deleted.

An **untagged rule** (``untagged: true``) deletes the manifests of matching
repositories that no tag reaches (after the tag rules' deletions) and that
were pushed into the repository more than ``olderthan`` ago.  A manifest
counts as reached when a kept tag names it, when it is a child of a reached
index, or a referrer (``subject``) of a reached manifest; untagged manifests
younger than ``olderthan`` protect what they reach the same way (an index
being pushed, its children first).  Each repository is governed by the first
untagged rule matching it.

Patterns are shell-style (:mod:`fnmatch`, case-sensitive): ``*`` matches any
characters, ``/`` included, ``?`` one, ``[abc]`` a set.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from typing import Any, Callable, Iterable

from cargohold.config import ConfigError, Duration, check_section
from cargohold.registry.manifests import TagRecord


class Age:
    """A duration as in the rest of the configuration (``90m``, ``36h``,
    seconds), with days and weeks in front: ``30d``, ``2w``, ``1d12h``.
    Coerced to float seconds."""

    _LONG = re.compile(r"\s*(?:(\d+(?:\.\d+)?)w)?(?:(\d+(?:\.\d+)?)d)?(.*?)\s*")

    @classmethod
    def coerce(cls, value: Any) -> float:
        expected = "expected an age such as 30d, 2w, 12h or 90m"
        if isinstance(value, str):
            weeks, days, rest = cls._LONG.fullmatch(value).groups()
            if weeks or days:
                base = float(weeks or 0) * 7 * 86400 + float(days or 0) * 86400
                if not rest:
                    return base
                value = rest
            else:
                base = 0.0
        else:
            base = 0.0
        try:
            return base + Duration.coerce(value)
        except ValueError:
            raise ValueError(expected) from None


#: One entry of ``retention.rules``.
RULE_SCHEMA = {"repositories": str, "tags": str, "keep": int, "olderthan": Age, "untagged": bool}


@dataclasses.dataclass(frozen=True)
class Rule:
    """One checked entry of ``retention.rules``; ``index`` is its position."""

    index: int
    repositories: str
    tags: str | None = None
    keep: int | None = None
    olderthan: float | None = None
    untagged: bool = False

    def matches_repository(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.repositories)

    def matches_tag(self, tag: str) -> bool:
        return self.tags is not None and fnmatch.fnmatchcase(tag, self.tags)

    def describe(self) -> str:
        """``rules[1]: keep 10 newest of dev-* in team-a/*`` and the like."""
        if self.untagged:
            what = f"untagged older than {_age(self.olderthan)}"
        else:
            parts = [f"keep {self.keep} newest" if self.keep is not None else "delete",
                     f"of {self.tags}"]
            if self.olderthan is not None:
                parts.append(f"older than {_age(self.olderthan)}")
            what = " ".join(parts)
        return f"rules[{self.index}]: {what} in {self.repositories}"


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def parse_rules(entries: Any, where: str = "retention.rules") -> list[Rule]:
    """``retention.rules`` checked: a list of rules, each a tag rule
    (``tags`` with ``keep`` and/or ``olderthan``) or an untagged rule
    (``untagged: true`` with ``olderthan``), both with ``repositories``.
    Raises :class:`ConfigError` naming every problem."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: expected a list of rules")
    rules, problems = [], []
    for i, entry in enumerate(entries):
        path = f"{where}[{i}]"
        try:
            values = check_section(entry, RULE_SCHEMA, path)
        except ConfigError as e:
            problems += e.problems
            continue
        problem = _rule_problem(values)
        if problem:
            problems.append(f"{path}: {problem}")
            continue
        rules.append(Rule(i, values["repositories"], values.get("tags"), values.get("keep"),
                          values.get("olderthan"), values.get("untagged", False)))
    if problems:
        raise ConfigError(*problems)
    return rules


def _rule_problem(values: dict) -> str | None:
    if not values.get("repositories"):
        return "'repositories' is required (a pattern such as team-a/* or *)"
    if values.get("untagged"):
        if "tags" in values or "keep" in values:
            return "an untagged rule takes no 'tags' or 'keep'"
        if values.get("olderthan") is None:
            return "an untagged rule needs 'olderthan' (manifests being pushed are untagged for a moment)"
        return None
    if not values.get("tags"):
        return "a rule needs 'tags' (a pattern) or 'untagged: true'"
    if values.get("keep") is None and values.get("olderthan") is None:
        return "a tag rule needs 'keep', 'olderthan' or both"
    if values.get("keep") is not None and values["keep"] < 0:
        return "'keep' must be 0 or more"
    return None


@dataclasses.dataclass(frozen=True)
class Deletion:
    """A tag (``tag`` set; ``digest`` is what it named) or an untagged
    manifest (``tag`` is ``None``) a rule selects."""

    repository: str
    tag: str | None
    digest: str
    pushed: float
    rule: Rule

    def as_dict(self) -> dict:
        return {"repository": self.repository, "tag": self.tag, "digest": self.digest, "pushed": self.pushed,
                "rule": self.rule.index, "reason": self.rule.describe()}


def applies_to(rules: Iterable[Rule], repository: str) -> bool:
    """Whether any rule may select something in ``repository``."""
    return any(rule.matches_repository(repository) for rule in rules)


def select_tags(repository: str, tags: Iterable[TagRecord], rules: list[Rule], now: float) -> list[Deletion]:
    """The tags of ``repository`` the tag rules delete (see the module
    docstring), newest first within each rule."""
    governed: dict[int, list[TagRecord]] = {}
    by_index = {}
    tag_rules = [r for r in rules if not r.untagged and r.matches_repository(repository)]
    for tag in tags:
        rule = next((r for r in tag_rules if r.matches_tag(tag.tag)), None)
        if rule is not None:
            governed.setdefault(rule.index, []).append(tag)
            by_index[rule.index] = rule
    out = []
    for index in sorted(governed):
        rule = by_index[index]
        ordered = sorted(governed[index], key=lambda t: (t.pushed, t.tag), reverse=True)
        for tag in ordered[rule.keep or 0:]:
            if rule.olderthan is None or now - tag.pushed > rule.olderthan:
                out.append(Deletion(repository, tag.tag, tag.digest, tag.pushed, rule))
    return out


def select_untagged(repository: str, kept_tags: Iterable[TagRecord], revisions: dict[str, float], rules: list[Rule],
                    now: float, reachable: Callable[[list[str]], set[str]]) -> list[Deletion]:
    """The manifests of ``repository`` (``revisions``: digest -> push time)
    the first matching untagged rule deletes: not reached from
    ``kept_tags`` nor from untagged manifests younger than its
    ``olderthan`` (``reachable(roots)`` gives the manifests roots reach),
    and older than that.  Oldest first."""
    rule = next((r for r in rules if r.untagged and r.matches_repository(repository)), None)
    if rule is None:
        return []
    roots = [t.digest for t in kept_tags] + [d for d, pushed in revisions.items() if now - pushed <= rule.olderthan]
    kept = reachable(roots)
    old = [(pushed, digest) for digest, pushed in revisions.items() if digest not in kept]
    return [Deletion(repository, None, digest, pushed, rule) for pushed, digest in sorted(old)]
