"""The Bugsnag-style reporter end to end: a handler error inside a real
request through the app reaches a real HTTP endpoint (the DSN's host) via
the SDK's own transport, with the request's context and none of its
credentials."""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.request

import pytest

import cargohold.app as app_module
from cargohold import hookimpl
from cargohold.app import create_app
from cargohold.auth import AuthProvider, Grant
from cargohold.config import ConfigError
from cargohold.plugins import build_plugin_manager
from cargohold.testing.server import LiveRegistry

from cargohold_report_bugsnag import EXTENSION
from cargohold_report_bugsnag.reporter import FILTERED, scrub

PASSWORD = "hunter2-9f3c"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
COOKIE = "session=cookie-77d1"
CREDENTIALS = (PASSWORD, BASIC, "cookie-77d1", "registry-auth-5e2a", "proxy-token-0b7e")


def config(collector, **extra) -> dict:
    settings = {"dsn": collector.dsn, "environment": "staging", "release": "cargohold@9.9.9", **extra}
    return {"storage": {"inmemory": {}}, "reporting": {"bugsnag": settings}}


class NamedUser(AuthProvider):
    def authorize(self, request, access):
        return Grant(user="alice")


class NamedUserAuth:
    @hookimpl
    def cargohold_auth_providers(self):
        return {"named-user": lambda params: NamedUser()}


@pytest.fixture
def build_app(monkeypatch):
    """``build_app(config, plugins=())``: an app whose plugin manager also
    holds ``plugins``; shut down at teardown (which flushes the reporter)."""
    apps = []

    def build(cfg, plugins=()):
        def manager(disabled=()):
            pm = build_plugin_manager(disabled)
            for plugin in plugins:
                pm.register(plugin)
            pm.check_pending()
            return pm

        monkeypatch.setattr(app_module, "build_plugin_manager", manager)
        app = create_app(config=cfg, environ={})
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.cargohold_shutdown()


def explode_in_tags_list(monkeypatch, app):
    manifests = app.extensions["cargohold"].registry.manifests

    def tags(name):
        raise RuntimeError(f"injected failure listing tags of {name}")

    monkeypatch.setattr(manifests, "tags", tags)


def credential_headers(request_id: str) -> dict:
    return {
        "Authorization": f"Basic {BASIC}",
        "Cookie": COOKIE,
        "X-Registry-Auth": "registry-auth-5e2a",
        "Proxy-Authorization": "Bearer proxy-token-0b7e",
        "X-Request-Id": request_id,
        "User-Agent": "reporter-test/1.0",
    }


def test_handler_error_reaches_the_error_service_without_credentials(build_app, collector, monkeypatch):
    app = build_app(config(collector))
    explode_in_tags_list(monkeypatch, app)

    resp = app.test_client().get(f"/v2/team/app/tags/list?n=5&password={PASSWORD}",
                                 headers=credential_headers("req-4242"))

    assert resp.status_code == 500
    assert resp.get_json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error", "detail": None}]}
    assert resp.headers["X-Request-Id"] == "req-4242"
    app.extensions[EXTENSION].flush()
    [received] = collector.wait_for(1)
    assert received["path"] == "/api/1/envelope/"
    [event] = collector.events()
    [exc] = event["exception"]["values"]
    assert exc["type"] == "RuntimeError" and "injected failure listing tags of team/app" in exc["value"]
    assert exc["stacktrace"]["frames"], "the stack trace is sent"
    assert all("vars" not in frame for frame in exc["stacktrace"]["frames"])
    assert event["environment"] == "staging" and event["release"] == "cargohold@9.9.9"
    assert event["transaction"] == "v2.tags_list"
    assert event["tags"]["route"] == "v2.tags_list"
    assert event["tags"]["method"] == "GET"
    assert event["tags"]["request_id"] == "req-4242"
    assert event["request"]["method"] == "GET"
    assert event["request"]["url"] == "/v2/team/app/tags/list"
    assert event["request"]["headers"]["User-Agent"] == "reporter-test/1.0"
    sent = {k.lower() for k in event["request"]["headers"]}
    assert not sent & {"authorization", "cookie", "x-registry-auth", "proxy-authorization"}
    # Nowhere in what went over the wire, compressed or not.
    for blob in (received["raw"], received["body"]):
        for secret in CREDENTIALS:
            assert secret.encode() not in blob
    assert b"Authorization" not in received["body"]


def test_authenticated_user_is_reported(build_app, collector, monkeypatch):
    cfg = config(collector)
    cfg["auth"] = {"named-user": {}}
    app = build_app(cfg, plugins=[NamedUserAuth()])
    explode_in_tags_list(monkeypatch, app)

    resp = app.test_client().get("/v2/app/tags/list", headers={"Authorization": f"Basic {BASIC}"})

    assert resp.status_code == 500
    app.extensions[EXTENSION].flush()
    collector.wait_for(1)
    [event] = collector.events()
    assert event["user"] == {"username": "alice"}
    assert PASSWORD.encode() not in collector.requests[0]["body"]


def test_registry_errors_are_not_reported(build_app, collector):
    app = build_app(config(collector))
    client = app.test_client()
    assert client.get("/v2/app/manifests/latest").status_code == 404
    assert client.get("/v2/BAD/tags/list").status_code == 400
    assert client.post("/v2/").status_code == 405
    assert client.get("/elsewhere").status_code == 404
    app.extensions[EXTENSION].flush()  # anything queued would have been sent by now
    assert collector.requests == []


def test_sample_rate_zero_sends_nothing_and_one_sends(build_app, collector, monkeypatch):
    muted = build_app(config(collector, samplerate=0.0))
    explode_in_tags_list(monkeypatch, muted)
    assert muted.test_client().get("/v2/app/tags/list").status_code == 500
    muted.extensions[EXTENSION].flush()
    loud = build_app(config(collector, samplerate=1.0, release="loud"))
    explode_in_tags_list(monkeypatch, loud)
    assert loud.test_client().get("/v2/app/tags/list").status_code == 500
    loud.extensions[EXTENSION].flush()
    collector.wait_for(1)
    assert [e["release"] for e in collector.events()] == ["loud"]


def test_without_a_dsn_nothing_is_set_up(build_app):
    app = build_app({"storage": {"inmemory": {}}})
    assert EXTENSION not in app.extensions
    app = build_app({"storage": {"inmemory": {}}, "reporting": {"bugsnag": {"dsn": ""}}})
    assert EXTENSION not in app.extensions


@pytest.mark.parametrize("key, value, message", [
    ("dsn", "not a dsn", "reporting.bugsnag.dsn: expected a DSN"),
    ("dsn", "https://errors.example.com/1", "reporting.bugsnag.dsn: expected a DSN"),  # no key
    ("dsn", "https://key@errors.example.com/", "reporting.bugsnag.dsn: expected a DSN"),  # no project
    ("dsn", "ftp://key@errors.example.com/1", "reporting.bugsnag.dsn: expected a DSN"),
    ("samplerate", 1.5, "reporting.bugsnag.samplerate: expected a number from 0.0 to 1.0"),
    ("samplerate", "often", "reporting.bugsnag.samplerate: expected a number from 0.0 to 1.0"),
    ("apikey", "abc", "unknown key 'reporting.bugsnag.apikey'"),
])
def test_bad_settings_name_the_key(build_app, collector, key, value, message):
    cfg = config(collector)
    cfg["reporting"]["bugsnag"][key] = value
    with pytest.raises(ConfigError) as info:
        build_app(cfg)
    assert message in str(info.value)


def test_settings_come_from_the_environment(collector):
    app = create_app(config={"storage": {"inmemory": {}}}, environ={
        "CARGOHOLD_REPORTING_BUGSNAG_DSN": collector.dsn,
        "CARGOHOLD_REPORTING_BUGSNAG_SAMPLERATE": "0.5",
        "CARGOHOLD_REPORTING_BUGSNAG_ENVIRONMENT": "ci",
    })
    try:
        settings = app.config["CARGOHOLD"]["reporting"]["bugsnag"]
        assert settings == {"dsn": collector.dsn, "samplerate": 0.5, "environment": "ci"}
        assert app.extensions[EXTENSION].client.options["sample_rate"] == 0.5
    finally:
        app.cargohold_shutdown()


def test_scrub_removes_credential_like_values_anywhere():
    event = {
        "request": {
            "headers": {"X-Api-Key": "k", "X-Auth-Token": "t", "Accept": "*/*", "Authorization": "Basic x"},
            "cookies": {"a": "b"},
            "query_string": "n=1&password=p&access_token=t&last=x",
        },
        "extra": {"db": {"password": "p", "host": "h"}, "items": [{"secret": "s"}]},
        "user": {"username": "alice", "session": "s"},
    }
    out = scrub(event)
    assert out["request"]["headers"] == {"Accept": "*/*"}
    assert "cookies" not in out["request"]
    assert out["request"]["query_string"] == "n=1&last=x"
    assert out["extra"] == {"db": {"password": FILTERED, "host": "h"}, "items": [{"secret": FILTERED}]}
    assert out["user"] == {"username": "alice", "session": FILTERED}


# -- a real server -----------------------------------------------------------


def test_storage_failure_on_a_live_server_is_reported(collector):
    """``cargohold serve`` (gevent, real sockets) with the plugin configured
    from the environment: a push that meets a broken storage root answers
    503 and the error arrives at the service without the credentials."""
    with LiveRegistry(env={"CARGOHOLD_REPORTING_BUGSNAG_DSN": collector.dsn,
                           "CARGOHOLD_REPORTING_BUGSNAG_ENVIRONMENT": "live"}) as registry:
        # Replace the storage root by a file: every storage call now fails.
        shutil.rmtree(registry.root)
        with open(registry.root, "w") as f:
            f.write("not a directory")
        try:
            req = urllib.request.Request(f"{registry.url}/v2/app/blobs/uploads/?password={PASSWORD}",
                                         headers=credential_headers("live-77"), method="POST")
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(req, timeout=10)
            assert info.value.code == 503
            assert json.load(info.value)["errors"][0]["code"] == "UNAVAILABLE"
            collector.wait_for(1)
        finally:
            os.unlink(registry.root)
            os.mkdir(registry.root)
    [event] = collector.events()
    assert event["environment"] == "live"
    assert event["tags"]["request_id"] == "live-77" and event["tags"]["route"] == "v2.start_upload"
    assert event["exception"]["values"][-1]["type"] == "StorageError"
    for secret in CREDENTIALS:
        assert secret.encode() not in collector.requests[0]["body"]
