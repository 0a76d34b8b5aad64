"""cargohold.access_control: the rules file, globs, grants and errors."""

from __future__ import annotations

import pytest

from cargohold.access_control import AccessRules, WatchedAccessRules, glob_to_regex
from cargohold.auth import Access

EXAMPLE = """
groups:
  admins: [alice, bob]
  ci: [robot]
rules:
  - repositories: ["public/*", "library/**"]
    users: [anonymous]
    actions: [pull]
  - repositories: ["team/*"]
    users: ["*"]
    actions: [pull]
  - repositories: ["team/*"]
    users: ["group:ci"]
    actions: [push]
  - repositories: ["**"]
    users: ["group:admins"]
    actions: ["*"]
  - repositories: ["carol/**"]
    users: [carol]
    actions: [pull, push, delete]
  - registry: catalog
    users: ["*"]
"""


@pytest.fixture
def rules(tmp_path) -> AccessRules:
    path = tmp_path / "access.yml"
    path.write_text(EXAMPLE)
    return AccessRules.load(str(path))


def repo(name: str, *actions: str) -> Access:
    return Access("repository", name, actions)


CATALOG = Access("registry", "catalog", ("*",))


# -- globs ----------------------------------------------------------------------


@pytest.mark.parametrize("pattern,name,matches", [
    ("public/*", "public/app", True),
    ("public/*", "public/team/app", False),
    ("public/*", "public", False),
    ("public/*", "publicx/app", False),
    ("library/**", "library/a", True),
    ("library/**", "library/a/b/c", True),
    ("library/**", "library", False),
    ("**", "anything/at/all", True),
    ("*", "top", True),
    ("*", "two/parts", False),
    ("a.b/c", "a.b/c", True),
    ("a.b/c", "axb/c", False),  # dots are literal
    ("*/app", "team/app", True),
    ("*/app", "team/sub/app", False),
    ("**/app", "team/sub/app", True),
])
def test_glob(pattern, name, matches):
    assert bool(glob_to_regex(pattern).match(name)) is matches


# -- grants ---------------------------------------------------------------------


def test_anonymous_pulls_public_but_never_pushes(rules):
    assert rules.granted(None, repo("public/app", "pull")) == ("pull",)
    assert rules.granted(None, repo("public/app", "pull", "push")) == ("pull",)
    assert rules.granted(None, repo("library/deep/app", "pull")) == ("pull",)
    assert rules.granted(None, repo("private/app", "pull")) == ()
    assert rules.granted(None, repo("public/team/app", "pull")) == ()


def test_any_authenticated_user_is_not_anonymous(rules):
    assert rules.granted("dave", repo("team/app", "pull", "push")) == ("pull",)
    assert rules.granted(None, repo("team/app", "pull")) == ()


def test_grants_accumulate_over_matching_rules(rules):
    # robot: pull via "*", push via group ci
    assert rules.granted("robot", repo("team/app", "pull", "push")) == ("pull", "push")
    assert rules.granted("robot", repo("team/app", "delete")) == ()


def test_star_action_grants_everything(rules):
    assert rules.granted("alice", repo("x/y/z", "pull", "push", "delete")) == ("pull", "push", "delete")
    assert rules.granted("alice", repo("x", "*")) == ("*",)
    # carol has the three actions listed, not "*": a requested "*" needs "*"
    assert rules.granted("carol", repo("carol/app", "pull", "push", "delete")) == ("pull", "push", "delete")
    assert rules.granted("carol", repo("carol/app", "*")) == ()


def test_user_names_are_exact(rules):
    assert rules.granted("alic", repo("x", "pull")) == ()
    assert rules.granted("carol", repo("carolx/app", "pull")) == ()


def test_catalog(rules):
    assert rules.granted("dave", CATALOG) == ("*",)
    assert rules.granted(None, CATALOG) == ()
    assert rules.granted("dave", Access("registry", "other", ("*",))) == ()


def test_repository_rules_do_not_grant_registry_access(rules):
    # "**" for admins matches names, not the registry:catalog resource type
    only_repos = AccessRules.from_dict({"rules": [{"repositories": ["**"], "users": ["*"], "actions": ["*"]}]})
    assert only_repos.granted("alice", CATALOG) == ()
    assert only_repos.granted("alice", repo("catalog", "pull")) == ("pull",)


def test_may_pull(rules):
    assert rules.may_pull(None, "public/app")
    assert not rules.may_pull(None, "team/app")
    assert rules.may_pull("dave", "team/app")
    assert not rules.may_pull("dave", "carol/app")
    assert rules.may_pull("carol", "carol/app")
    assert rules.may_pull("alice", "anything")
    push_only = AccessRules.from_dict({"rules": [{"repositories": ["**"], "users": ["*"], "actions": ["push"]}]})
    assert not push_only.may_pull("dave", "x")


def test_allow_all_authenticated():
    rules = AccessRules.allow_all_authenticated()
    assert rules.granted("anyone", repo("a/b", "pull", "push", "delete")) == ("pull", "push", "delete")
    assert rules.granted("anyone", CATALOG) == ("*",)
    assert rules.granted(None, repo("a/b", "pull")) == ()
    assert rules.granted(None, CATALOG) == ()
    assert not rules.allows_anonymous()


def test_no_rules_grant_nothing():
    rules = AccessRules.from_dict({})
    assert rules.granted("alice", repo("a", "pull")) == ()
    assert not rules.may_pull("alice", "a")


def test_allows_anonymous(rules):
    assert rules.allows_anonymous()


# -- errors name the problem ------------------------------------------------------------


@pytest.mark.parametrize("data,message", [
    ([], "expected a mapping"),
    ({"rule": []}, "rule: unknown key"),
    ({"rules": {}}, "rules: expected a list"),
    ({"groups": []}, "groups: expected a mapping"),
    ({"groups": {"g": "alice"}}, "groups.g: expected a list of user names"),
    ({"rules": ["x"]}, "rules[0]: expected a mapping"),
    ({"rules": [{"users": ["*"], "actions": ["pull"]}]}, "rules[0]: give exactly one of"),
    ({"rules": [{"repositories": ["a"], "registry": "catalog", "users": ["*"]}]}, "rules[0]: give exactly one of"),
    ({"rules": [{"repositories": ["a"], "users": ["*"], "actions": ["pul"]}]}, "rules[0].actions: unknown action 'pul'"),
    ({"rules": [{"repositories": ["a"], "users": ["*"]}]}, "rules[0].actions: required"),
    ({"rules": [{"repositories": ["a"], "actions": ["pull"]}]}, "rules[0].users: required"),
    ({"rules": [{"repositories": [], "users": ["*"], "actions": ["pull"]}]}, "rules[0].repositories: expected a non-empty list"),
    ({"rules": [{"repositories": ["a"], "users": ["group:nope"], "actions": ["pull"]}]}, "rules[0].users: unknown group 'nope'"),
    ({"rules": [{"repositories": ["a"], "users": ["*"], "actions": ["pull"], "extra": 1}]}, "rules[0].extra: unknown key"),
    ({"rules": [{"registry": "tags", "users": ["*"]}]}, "rules[0].registry: unknown registry resource 'tags'"),
    ({"rules": [{"registry": "catalog", "users": ["*"], "actions": ["pull"]}]}, "rules[0].actions: registry resources have only"),
])
def test_invalid_rules_name_the_key(data, message):
    with pytest.raises(ValueError) as info:
        AccessRules.from_dict(data, origin="access.yml")
    assert str(info.value).startswith("access.yml: ")
    assert message in str(info.value)


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yml"
    with pytest.raises(ValueError, match=r"missing\.yml: cannot read access rules"):
        AccessRules.load(str(missing))
    bad = tmp_path / "bad.yml"
    bad.write_text("rules: [\n")
    with pytest.raises(ValueError, match=r"bad\.yml: not valid YAML"):
        AccessRules.load(str(bad))
    wrong = tmp_path / "wrong.yml"
    wrong.write_text("rules:\n  - repositories: [a]\n    users: ['*']\n    actions: [pul]\n")
    with pytest.raises(ValueError, match=r"wrong\.yml: rules\[0\]\.actions: unknown action"):
        AccessRules.load(str(wrong))


def test_empty_file_grants_nothing(tmp_path):
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert AccessRules.load(str(path)).granted("alice", repo("a", "pull")) == ()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_watched_rules_follow_the_file_and_fail_closed_while_it_is_broken(tmp_path, caplog):
    path = tmp_path / "access.yml"
    path.write_text(EXAMPLE)
    clock = FakeClock()
    rules = WatchedAccessRules(str(path), interval=1.0, clock=clock)
    push = Access("repository", "carol/app", ("pull", "push"))
    assert rules.granted("carol", push) == ("pull", "push")

    # carol loses push: seen once the interval has passed, not before
    path.write_text(EXAMPLE.replace("actions: [pull, push, delete]", "actions: [pull]"))
    clock.now = 0.5
    assert rules.granted("carol", push) == ("pull", "push")
    clock.now = 1.0
    assert rules.granted("carol", push) == ("pull",)
    assert rules.may_pull(None, "public/app")

    # a half-edited file grants nothing, not the previous rules
    path.write_text("rules:\n  - repositories: [x]\n    users: [carol]\n    actions: [pul]\n")
    clock.now = 2.0
    assert rules.granted("carol", push) == () and not rules.may_pull(None, "public/app")
    assert not rules.allows_anonymous()
    assert "access rules reload failed" in caplog.text and "unknown action 'pul'" in caplog.text

    path.write_text(EXAMPLE)  # fixed
    clock.now = 3.0
    assert rules.granted("carol", push) == ("pull", "push") and rules.allows_anonymous()


def test_watched_rules_must_load_at_start(tmp_path):
    with pytest.raises(ValueError, match="cannot read access rules"):
        WatchedAccessRules(str(tmp_path / "missing.yml"))
