"""The Sentry reporter: the reporting contract (cargohold.testing.reporting)
against a real HTTP server on 127.0.0.1 as the DSN's host, reached by the
SDK's own transport, plus what is particular to this plugin."""

from __future__ import annotations

import json

import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.scrub import FILTERED
from cargohold.testing.reporting import Report, ReporterSuite, decoded_body

from cargohold_report_sentry import plugin
from cargohold_report_sentry.reporter import scrub


def dsn(url: str) -> str:
    """The DSN of project 1 on the service at ``url``."""
    return url.replace("://", "://public@", 1) + "/1"


def envelope_events(body: bytes) -> list[dict]:
    """The ``event`` items of one envelope: a header line, then pairs of
    item header and payload lines."""
    lines = body.split(b"\n")
    events = []
    for i in range(1, len(lines) - 1, 2):
        if json.loads(lines[i]).get("type") == "event":
            events.append(json.loads(lines[i + 1]))
    return events


class TestSentryReporter(ReporterSuite):
    section = "sentry"

    def settings(self, url):
        return {"dsn": dsn(url), "environment": "staging", "release": "cargohold@9.9.9"}

    def decode(self, delivery):
        reports = []
        for event in envelope_events(decoded_body(delivery)):
            exc = event["exception"]["values"][-1]  # the last one is the one raised
            reports.append(Report(
                error_class=exc["type"], message=exc["value"],
                functions=[f.get("function") for v in event["exception"]["values"]
                           for f in (v.get("stacktrace") or {}).get("frames", [])],
                route=event["tags"].get("route"), request_id=event["tags"].get("request_id"),
                method=event["request"]["method"], path=event["request"]["url"],
                user=(event.get("user") or {}).get("username"), headers=event["request"]["headers"], raw=event))
        return reports

    def check_delivery(self, delivery, settings):
        assert delivery.path == "/api/1/envelope/"
        [event] = envelope_events(decoded_body(delivery))
        assert event["environment"] == "staging" and event["release"] in ("cargohold@9.9.9", "loud")
        assert event["transaction"] == event["tags"]["route"]
        frames = [f for v in event["exception"]["values"] for f in v["stacktrace"]["frames"]]
        assert frames and all("vars" not in frame for frame in frames), "no local variables"

    def test_sample_rate_zero_sends_nothing_and_one_sends(self, build_app, receiver, monkeypatch):
        muted = build_app(self.config(receiver.url, samplerate=0.0))
        self.break_tags_list(monkeypatch, muted)
        assert muted.test_client().get("/v2/app/tags/list").status_code == 500
        muted.cargohold_shutdown()
        loud = build_app(self.config(receiver.url, samplerate=1.0, release="loud"))
        self.break_tags_list(monkeypatch, loud)
        assert loud.test_client().get("/v2/app/tags/list").status_code == 500
        loud.cargohold_shutdown()
        receiver.wait_for_deliveries(1)
        assert [r.raw["release"] for r in self.reports(receiver)] == ["loud"]


def test_without_a_dsn_nothing_is_set_up():
    for cfg in ({"storage": {"inmemory": {}}},
                {"storage": {"inmemory": {}}, "reporting": {"sentry": {"dsn": ""}}}):
        app = create_app(config=cfg, environ={})
        assert plugin.reporter(app) is None
        app.cargohold_shutdown()


@pytest.mark.parametrize("key, value, message", [
    ("dsn", "not a dsn", "reporting.sentry.dsn: expected a DSN"),
    ("dsn", "https://errors.example.com/1", "reporting.sentry.dsn: expected a DSN"),  # no key
    ("dsn", "https://key@errors.example.com/", "reporting.sentry.dsn: expected a DSN"),  # no project
    ("dsn", "ftp://key@errors.example.com/1", "reporting.sentry.dsn: expected a DSN"),
    ("samplerate", 1.5, "reporting.sentry.samplerate: expected a number from 0.0 to 1.0"),
    ("samplerate", "often", "reporting.sentry.samplerate: expected a number from 0.0 to 1.0"),
    ("apikey", "abc", "unknown key 'reporting.sentry.apikey'"),
])
def test_bad_settings_name_the_key(key, value, message):
    settings = {"dsn": "http://public@127.0.0.1:9/1", key: value}
    with pytest.raises(ConfigError) as info:
        create_app(config={"storage": {"inmemory": {}}, "reporting": {"sentry": settings}}, environ={})
    assert message in str(info.value)


def test_settings_come_from_the_environment():
    url = "http://public@127.0.0.1:9/1"
    app = create_app(config={"storage": {"inmemory": {}}}, environ={
        "CARGOHOLD_REPORTING_SENTRY_DSN": url,
        "CARGOHOLD_REPORTING_SENTRY_SAMPLERATE": "0.5",
        "CARGOHOLD_REPORTING_SENTRY_ENVIRONMENT": "ci",
    })
    try:
        assert app.config["CARGOHOLD"]["reporting"]["sentry"] == {"dsn": url, "samplerate": 0.5, "environment": "ci"}
        assert plugin.reporter(app).client.options["sample_rate"] == 0.5
    finally:
        app.cargohold_shutdown()


def test_before_send_scrubs_credential_like_values_anywhere():
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
