"""What retention rules select: checking ``retention.rules``, and the tag and
untagged selections over given tags, push times and manifest graphs."""

from __future__ import annotations

import pytest

from cargohold.config import ConfigError
from cargohold.registry.manifests import TagRecord

from cargohold_policy_retention.rules import Age, parse_rules, select_tags, select_untagged

DAY = 86400.0
NOW = 1_000 * DAY


def tags(*specs) -> list[TagRecord]:
    """``(tag, age in days[, digest])`` -> tag records pushed that long before NOW."""
    return [TagRecord(spec[0], spec[2] if len(spec) > 2 else f"sha256:{spec[0]}", NOW - spec[1] * DAY)
            for spec in specs]


def deleted(deletions) -> list:
    return [(d.repository, d.tag or d.digest, d.rule.index) for d in deletions]


@pytest.mark.parametrize("text, seconds", [
    ("30d", 30 * DAY), ("2w", 14 * DAY), ("1d12h", 1.5 * DAY), ("36h", 1.5 * DAY), ("90m", 5400.0),
    ("1.5d", 1.5 * DAY), (45, 45.0), ("10", 10.0), ("1w2d3h", 9 * DAY + 3 * 3600),
])
def test_age_accepts_days_weeks_and_durations(text, seconds):
    assert Age.coerce(text) == seconds


@pytest.mark.parametrize("text", ["d", "30 days", "-1d", "", "1d-2h", True, [1]])
def test_age_refuses_anything_else(text):
    with pytest.raises(ValueError, match="expected an age such as 30d"):
        Age.coerce(text)


def test_parse_rules_coerces_and_numbers_them():
    rules = parse_rules([
        {"repositories": "team-a/*", "tags": "dev-*", "keep": "10"},
        {"repositories": "*", "untagged": True, "olderthan": "30d"},
        {"repositories": "ci/*", "tags": "*", "olderthan": "7d", "keep": 3},
    ])
    assert [(r.index, r.repositories, r.tags, r.keep, r.olderthan, r.untagged) for r in rules] == [
        (0, "team-a/*", "dev-*", 10, None, False),
        (1, "*", None, None, 30 * DAY, True),
        (2, "ci/*", "*", 3, 7 * DAY, False),
    ]
    assert rules[0].describe() == "rules[0]: keep 10 newest of dev-* in team-a/*"
    assert rules[1].describe() == "rules[1]: untagged older than 30d in *"
    assert rules[2].describe() == "rules[2]: keep 3 newest of * older than 7d in ci/*"
    assert parse_rules(None) == []


def test_parse_rules_names_every_problem():
    with pytest.raises(ConfigError) as info:
        parse_rules([
            {"repositories": "a/*", "tags": "x", "kep": 3},
            {"tags": "x", "keep": 1},
            {"repositories": "*", "untagged": True},
            {"repositories": "*", "untagged": True, "olderthan": "1d", "keep": 2},
            {"repositories": "*", "tags": "*"},
            {"repositories": "*", "keep": 2},
            {"repositories": "*", "tags": "*", "keep": -1},
            {"repositories": "*", "tags": "*", "olderthan": "soon"},
            "keep everything",
        ])
    problems = info.value.problems
    assert problems[0].startswith("unknown key 'retention.rules[0].kep' (did you mean 'retention.rules[0].keep'?)")
    assert problems[1] == "retention.rules[1]: 'repositories' is required (a pattern such as team-a/* or *)"
    assert problems[2].startswith("retention.rules[2]: an untagged rule needs 'olderthan'")
    assert problems[3] == "retention.rules[3]: an untagged rule takes no 'tags' or 'keep'"
    assert problems[4] == "retention.rules[4]: a tag rule needs 'keep', 'olderthan' or both"
    assert problems[5] == "retention.rules[5]: a rule needs 'tags' (a pattern) or 'untagged: true'"
    assert problems[6] == "retention.rules[6]: 'keep' must be 0 or more"
    assert problems[7].startswith("retention.rules[7].olderthan: expected an age such as 30d")
    assert problems[8].startswith("retention.rules[8]: expected a section")
    assert len(problems) == 9
    with pytest.raises(ConfigError, match="retention.rules: expected a list of rules"):
        parse_rules({"repositories": "*"})


def test_keep_newest_n_by_push_time_not_by_name():
    rules = parse_rules([{"repositories": "team-a/*", "tags": "dev-*", "keep": 2}])
    found = tags(("dev-9", 5), ("dev-10", 1), ("dev-11", 3), ("dev-8", 2), ("release-1", 100))
    assert deleted(select_tags("team-a/app", found, rules, NOW)) == [
        ("team-a/app", "dev-11", 0), ("team-a/app", "dev-9", 0)]
    # Another repository: no rule applies.
    assert select_tags("team-b/app", found, rules, NOW) == []


def test_equal_push_times_keep_the_lexically_greater_tags():
    rules = parse_rules([{"repositories": "*", "tags": "*", "keep": 1}])
    found = tags(("b", 1), ("c", 1), ("a", 1))
    assert [d.tag for d in select_tags("r", found, rules, NOW)] == ["b", "a"]


def test_keep_with_olderthan_deletes_only_old_ones_beyond_n():
    rules = parse_rules([{"repositories": "*", "tags": "*", "keep": 1, "olderthan": "7d"}])
    found = tags(("new", 0), ("recent", 3), ("old", 8), ("older", 20))
    assert [d.tag for d in select_tags("r", found, rules, NOW)] == ["old", "older"]


def test_olderthan_alone_and_keep_zero():
    rules = parse_rules([{"repositories": "*", "tags": "pr-*", "olderthan": "1d"},
                         {"repositories": "*", "tags": "tmp-*", "keep": 0}])
    found = tags(("pr-1", 2), ("pr-2", 0.5), ("tmp-a", 0), ("v1", 50))
    assert deleted(select_tags("r", found, rules, NOW)) == [("r", "pr-1", 0), ("r", "tmp-a", 1)]


def test_each_tag_is_governed_by_the_first_matching_rule():
    rules = parse_rules([
        {"repositories": "team-a/*", "tags": "release-*", "keep": 100},
        {"repositories": "*", "tags": "*", "keep": 1},
    ])
    found = tags(("release-1", 9), ("release-2", 8), ("dev-1", 3), ("dev-2", 2))
    # In team-a the releases are governed by rule 0 (all kept); the rest by rule 1.
    assert deleted(select_tags("team-a/app", found, rules, NOW)) == [("team-a/app", "dev-1", 1)]
    # Elsewhere rule 1 governs every tag.
    assert [d.tag for d in select_tags("team-b/app", found, rules, NOW)] == ["dev-1", "release-2", "release-1"]


def test_repository_patterns_match_across_slashes():
    rules = parse_rules([{"repositories": "team-a/*", "tags": "*", "keep": 0}])
    assert select_tags("team-a/sub/app", tags(("x", 1)), rules, NOW)
    assert not select_tags("team-ab/app", tags(("x", 1)), rules, NOW)
    assert not select_tags("Team-a/app", tags(("x", 1)), rules, NOW)


def graph(edges: dict[str, list[str]]):
    """``reachable`` over a manifest graph: digest -> digests it reaches
    (children, referrers)."""

    def reachable(roots):
        seen, queue = set(), list(roots)
        while queue:
            digest = queue.pop()
            if digest not in seen:
                seen.add(digest)
                queue += edges.get(digest, [])
        return seen

    return reachable


def test_untagged_older_than_deletes_what_no_kept_tag_reaches():
    rules = parse_rules([{"repositories": "*", "untagged": True, "olderthan": "30d"}])
    revisions = {"index": NOW - 90 * DAY, "amd64": NOW - 90 * DAY, "arm64": NOW - 90 * DAY,
                 "signature": NOW - 60 * DAY, "orphan-old": NOW - 31 * DAY, "orphan-young": NOW - 29 * DAY,
                 "young-index": NOW - 1 * DAY, "old-child": NOW - 40 * DAY, "retagged": NOW - 100 * DAY}
    reachable = graph({"index": ["amd64", "arm64", "signature"], "young-index": ["old-child"]})
    kept = tags(("v1", 90, "index"), ("v0", 1, "retagged"))
    found = select_untagged("r", kept, revisions, rules, NOW, reachable)
    # Children and referrers of a tagged index stay; so does what a young
    # untagged index reaches; the old orphan goes.
    assert deleted(found) == [("r", "orphan-old", 0)]


def test_untagged_first_matching_rule_per_repository():
    rules = parse_rules([{"repositories": "ci/*", "untagged": True, "olderthan": "1d"},
                         {"repositories": "*", "untagged": True, "olderthan": "30d"}])
    revisions = {"a": NOW - 2 * DAY, "b": NOW - 40 * DAY}
    assert [d.digest for d in select_untagged("ci/app", [], revisions, rules, NOW, graph({}))] == ["b", "a"]
    assert [d.digest for d in select_untagged("prod/app", [], revisions, rules, NOW, graph({}))] == ["b"]
    assert select_untagged("prod/app", [], revisions, rules[:1], NOW, graph({})) == []
