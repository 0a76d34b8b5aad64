"""cargohold.scrub: what reporters remove before anything leaves the process."""

from __future__ import annotations

import pytest

from cargohold.scrub import FILTERED, is_credential_name, scrub_headers, scrub_query, scrub_values


@pytest.mark.parametrize("name", [
    "Authorization", "Proxy-Authorization", "authorisation", "Cookie", "Set-Cookie", "X-Auth-Token",
    "access_token", "password", "db_passwd", "client_secret", "X-Api-Key", "apikey", "API_KEY",
    "X-Registry-Credential", "sessionid", "X-Amz-Signature", "private_key",
    "key", "sig", "pass",  # the core's redacted query parameters, by exact name
    b"Authorization",
])
def test_credential_like_names(name):
    assert is_credential_name(name)


@pytest.mark.parametrize("name", ["User-Agent", "Accept", "X-Request-Id", "n", "last", "keyboard", "route", 7, None])
def test_other_names(name):
    assert not is_credential_name(name)


def test_headers_with_credential_like_names_are_dropped():
    headers = {"X-Api-Key": "k", "X-Auth-Token": "t", "Accept": "*/*", "Authorization": "Basic x",
               "User-Agent": "skopeo"}
    assert scrub_headers(headers) == {"Accept": "*/*", "User-Agent": "skopeo"}
    assert scrub_headers(None) == {}


def test_query_parameters_with_credential_like_names_are_dropped():
    assert scrub_query("n=1&password=p&access_token=t&last=x&Signature=s") == "n=1&last=x"
    assert scrub_query("") == ""
    assert scrub_query("scope=repository%3Aapp%3Apull") == "scope=repository%3Aapp%3Apull"


def test_values_under_credential_like_keys_are_replaced_at_any_depth():
    value = {
        "db": {"password": "p", "host": "h"},
        "items": [{"secret": "s"}, ("a", {"token": "t"})],
        "user": {"name": "alice", "session": {"id": "x"}},
        "count": 3,
    }
    assert scrub_values(value) == {
        "db": {"password": FILTERED, "host": "h"},
        "items": [{"secret": FILTERED}, ["a", {"token": FILTERED}]],
        "user": {"name": "alice", "session": FILTERED},
        "count": 3,
    }
    assert value["db"]["password"] == "p"  # a copy; the input is left alone
