"""The ``proxy`` section: its forms, its checks, and the upstreams built from
it; the upstream client's challenge parsing."""

from __future__ import annotations

import pytest

from cargohold.config import ConfigError, mask_secrets, read_config, validate
from cargohold.proxy.upstream import DEFAULT_TAG_TTL, DEFAULT_TTL, parse_challenge, upstreams_from_config


def load(proxy, environ=None) -> dict:
    return validate(read_config(overrides={"storage": {"inmemory": {}}, "proxy": proxy}, environ=environ or {}))


def problems(proxy) -> str:
    with pytest.raises(ConfigError) as e:
        load(proxy)
    return str(e.value)


def test_no_section_no_proxy():
    config = validate(read_config(overrides={"storage": {"inmemory": {}}}, environ={}))
    assert "proxy" not in config
    assert upstreams_from_config(config.get("proxy")) == []


def test_the_reference_form_mirrors_every_repository():
    config = load({"remoteurl": "https://registry-1.docker.io", "username": "u", "password": "p", "ttl": "24h"})
    [upstream] = upstreams_from_config(config["proxy"])
    assert (upstream.url, upstream.prefix, upstream.username, upstream.password) == (
        "https://registry-1.docker.io", "", "u", "p")
    assert upstream.ttl == 24 * 3600 and upstream.tagttl == DEFAULT_TAG_TTL
    assert upstream.serves("library/alpine") and upstream.remote_name("library/alpine") == "library/alpine"
    assert mask_secrets(config)["proxy"]["password"] == "******"


def test_the_reference_form_from_the_environment():
    config = load({}, environ={"CARGOHOLD_PROXY_REMOTEURL": "http://127.0.0.1:5001", "CARGOHOLD_PROXY_TTL": "1h"})
    [upstream] = upstreams_from_config(config["proxy"])
    assert upstream.url == "http://127.0.0.1:5001" and upstream.ttl == 3600


def test_upstreams_by_prefix_and_ns_with_section_defaults():
    config = load({"tagttl": "1m", "timeout": "5s", "upstreams": [
        {"url": "https://registry-1.docker.io/", "prefix": "dockerhub", "ns": ["docker.io"], "password": "s"},
        {"url": "https://quay.io", "ns": "quay.io", "tagttl": "1h", "ttl": 0},
        {"url": "https://ghcr.io", "prefix": "gh/team/"},
    ], "remoteurl": "http://fallback:5000"})
    ordered = upstreams_from_config(config["proxy"])
    # Longest prefix first (ties in file order), the catch-all last.
    assert [u.prefix for u in ordered] == ["dockerhub/", "quay.io/", "gh/team/", ""]
    hub, quay, gh, fallback = ordered
    assert (hub.url, hub.namespaces, hub.tagttl, hub.timeout, hub.ttl) == (
        "https://registry-1.docker.io", ("docker.io",), 60, 5, DEFAULT_TTL)
    assert (quay.namespaces, quay.tagttl, quay.ttl) == (("quay.io",), 3600, 0)
    assert gh.serves("gh/team/app") and not gh.serves("gh/other/app") and gh.remote_name("gh/team/app") == "app"
    assert fallback.url == "http://fallback:5000" and fallback.serves("anything/else")
    assert mask_secrets(config)["proxy"]["upstreams"][0]["password"] == "******"


@pytest.mark.parametrize("proxy, expected", [
    ({"upstreams": [{"prefix": "a/"}]}, "proxy.upstreams[0].url: expected http(s)://host[:port]"),
    ({"upstreams": [{"url": "ftp://x", "prefix": "a/"}]}, "proxy.upstreams[0].url: expected http(s)"),
    ({"upstreams": [{"url": "http://x"}]}, "proxy.upstreams[0]: give the local namespace it serves"),
    ({"upstreams": [{"url": "http://x", "prefix": "Bad/"}]}, "proxy.upstreams[0].prefix: expected repository name"),
    ({"upstreams": [{"url": "http://x", "ns": ["not a host"]}]}, "proxy.upstreams[0].ns: expected a registry host"),
    ({"upstreams": [{"url": "http://x", "prefix": "a/"}, {"url": "http://y", "prefix": "a"}]},
     "proxy.upstreams[1].prefix: 'a/' is already served by proxy.upstreams[0]"),
    ({"upstreams": [{"url": "http://x", "ns": ["docker.io"]}, {"url": "http://y", "prefix": "b/", "ns": "docker.io"}]},
     "proxy.upstreams[1].ns: 'docker.io' is already answered by proxy.upstreams[0]"),
    ({"upstreams": [{"url": "http://x", "prefix": "a/", "tagttl": "soon"}]},
     "proxy.upstreams[0].tagttl: expected a duration"),
    ({"upstreams": [{"url": "http://x", "prefix": "a/", "colour": 1}]}, "unknown key 'proxy.upstreams[0].colour'"),
    ({"upstreams": ["http://x"]}, "proxy.upstreams[0]: expected a section"),
    ({"remoteurl": "registry-1.docker.io"}, "proxy.remoteurl: expected http(s)://host[:port]"),
    ({"username": "u"}, "proxy.username: credentials of the simple form need proxy.remoteurl"),
    ({"remoteurl": "http://x", "ttl": "-1s"}, "proxy.ttl: expected a duration"),
    ({"remoteurl": "http://x", "remote": "y"}, "unknown key 'proxy.remote' (did you mean 'proxy.remoteurl'?)"),
])
def test_bad_sections_name_the_key(proxy, expected):
    assert expected in problems(proxy)


def test_validation_is_idempotent():
    config = load({"upstreams": [{"url": "http://x", "prefix": "a/", "ttl": "1h"}]})
    assert validate(config) == config


@pytest.mark.parametrize("header, expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"',
     ("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                 "scope": "repository:library/alpine:pull"})),
    ('Basic realm="registry"', ("basic", {"realm": "registry"})),
    ("Bearer realm=http://127.0.0.1:1/auth, service=x",
     ("bearer", {"realm": "http://127.0.0.1:1/auth", "service": "x"})),
    ("", ("", {})),
])
def test_challenges_are_parsed(header, expected):
    assert parse_challenge(header) == expected
