"""The scope grammar and access sets."""

from __future__ import annotations

import pytest

from cargohold.auth import Access
from cargohold_auth_token.scopes import AccessSet, format_scopes, parse_scope, parse_scopes


@pytest.mark.parametrize("text,expected", [
    ("repository:team/app:pull,push", Access("repository", "team/app", ("pull", "push"))),
    ("repository:localhost:5000/team/app:pull", Access("repository", "localhost:5000/team/app", ("pull",))),
    ("registry:catalog:*", Access("registry", "catalog", ("*",))),
    ("repository:a:pull,pull,,push", Access("repository", "a", ("pull", "push"))),
    ("repository(plugin):vieux/sshfs:pull", Access("repository(plugin)", "vieux/sshfs", ("pull",))),
])
def test_parse_scope(text, expected):
    assert parse_scope(text) == expected


@pytest.mark.parametrize("text", ["", "repository", "repository:app", "repository::pull", ":app:pull",
                                  "Repository:app:pull", "repository:app:PULL", "repository:app:", "repository:a b:pull",
                                  "repository:app:pull;rm"])
def test_invalid_scopes(text):
    with pytest.raises(ValueError, match="invalid scope"):
        parse_scope(text)


def test_scopes_merge_per_resource_in_order():
    parsed = parse_scopes(["repository:a:pull repository:b:push", "repository:a:push,pull", "registry:catalog:*"])
    assert parsed == [Access("repository", "a", ("pull", "push")), Access("repository", "b", ("push",)),
                      Access("registry", "catalog", ("*",))]
    assert format_scopes(parsed) == "repository:a:pull,push repository:b:push registry:catalog:*"


def test_access_set_wildcard_and_types():
    access = AccessSet([Access("repository", "a", ("*",)), Access("repository", "b", ("pull",)),
                        Access("registry", "catalog", ("*",))])
    assert access.covers(Access("repository", "a", ("pull", "push", "delete")))
    assert not access.covers(Access("repository", "b", ("pull", "push")))
    assert not access.covers(Access("registry", "b", ("pull",)))
    assert access.covers(Access("registry", "catalog", ("*",)))
    assert access.may_pull("a") and access.may_pull("b") and not access.may_pull("catalog")
