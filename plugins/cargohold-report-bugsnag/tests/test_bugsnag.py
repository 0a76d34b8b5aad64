"""The Bugsnag reporter: the reporting contract (cargohold.testing.reporting)
with the bugsnag package's client posting its notify payload to a real HTTP
server on 127.0.0.1 set as ``endpoint``, plus what is particular to Bugsnag."""

from __future__ import annotations

import json
import sys
import threading

import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.testing.reporting import Report, ReporterSuite, SilentEndpoint, decoded_body

from cargohold_report_bugsnag import plugin
from cargohold_report_bugsnag.reporter import BackgroundDelivery

APIKEY = "0123456789abcdef0123456789abcdef"


class TestBugsnagReporter(ReporterSuite):
    section = "bugsnag"

    def settings(self, url):
        return {"apikey": APIKEY, "releasestage": "staging", "endpoint": url + "/notify"}

    def decode(self, delivery):
        payload = json.loads(decoded_body(delivery))
        reports = []
        for event in payload.get("events", []):
            exc = event["exceptions"][0]  # the one raised; its causes follow
            request = event["metaData"]["request"]
            reports.append(Report(
                error_class=exc["errorClass"], message=exc["message"],
                functions=[frame["method"] for e in event["exceptions"] for frame in e["stacktrace"]],
                route=event["context"], request_id=request.get("requestId"),
                method=request.get("httpMethod"), path=request.get("url"),
                user=event["user"].get("name"), headers=request.get("headers") or {}, raw=event))
        return reports

    def check_delivery(self, delivery, settings):
        assert delivery.path == "/notify"
        assert delivery.headers["Bugsnag-Api-Key"] == APIKEY
        assert delivery.headers["Bugsnag-Payload-Version"] == "4.0"
        assert delivery.headers["Content-Type"] == "application/json"
        payload = json.loads(decoded_body(delivery))
        assert payload["apiKey"] == APIKEY
        [event] = payload["events"]
        assert event["releaseStage"] == "staging"
        assert event["severity"] == "error" and event["unhandled"] is True
        assert event["app"]["version"]
        assert event["breadcrumbs"] == [] and event["session"] is None
        assert "environment" not in event["metaData"]
        frames = [frame for e in event["exceptions"] for frame in e["stacktrace"]]
        assert frames and all(set(frame) <= {"file", "lineNumber", "method", "inProject", "code"} for frame in frames)
        assert event["metaData"]["request"]["route"].startswith("/v2/")

    def test_a_chained_storage_error_sends_its_cause(self, build_app, receiver, monkeypatch):
        app = build_app(self.config(receiver.url))

        def tags(name):
            try:
                raise OSError(5, "Input/output error")
            except OSError as e:
                raise RuntimeError("listing failed") from e

        monkeypatch.setattr(app.extensions["cargohold"].registry.manifests, "tags", tags)
        assert app.test_client().get("/v2/app/tags/list").status_code == 500
        app.cargohold_shutdown()
        [report] = self.reports(receiver)
        assert [e["errorClass"] for e in report.raw["exceptions"]] == ["RuntimeError", "OSError"]


def test_without_an_apikey_nothing_is_set_up():
    for cfg in ({"storage": {"inmemory": {}}},
                {"storage": {"inmemory": {}}, "reporting": {"bugsnag": {"apikey": "", "releasestage": "x"}}}):
        app = create_app(config=cfg, environ={})
        assert plugin.reporter(app) is None
        app.cargohold_shutdown()


def test_client_is_the_apps_own_and_hooks_nothing_global():
    hooks = (sys.excepthook, threading.excepthook)
    # Not even the package's global client, made when it was imported.
    assert not any(hasattr(hook, "bugsnag_client") for hook in hooks)
    app = create_app(config={"storage": {"inmemory": {}}, "reporting": {"bugsnag": {"apikey": APIKEY}}}, environ={})
    try:
        configuration = plugin.reporter(app).client.configuration
        assert configuration.endpoint == "https://notify.bugsnag.com"  # the default: Bugsnag's own
        assert configuration.release_stage == "production"
        assert configuration.auto_capture_sessions is False and configuration.auto_notify is False
        assert configuration.send_environment is False and configuration.max_breadcrumbs == 0
        assert isinstance(configuration.delivery, BackgroundDelivery)
        assert (sys.excepthook, threading.excepthook) == hooks
    finally:
        app.cargohold_shutdown()


@pytest.mark.parametrize("key, value, message", [
    ("dsn", "https://key@errors.example.com/42",
     "reporting.bugsnag.dsn: moved to reporting.sentry.dsn (the Sentry reporter, cargohold-report-sentry)"),
    ("environment", "production", "reporting.bugsnag.environment: moved to reporting.sentry.environment"),
    ("release", "cargohold@1.4.2", "reporting.bugsnag.release: moved to reporting.sentry.release"),
    ("samplerate", 0.5, "reporting.bugsnag.samplerate: moved to reporting.sentry.samplerate"),
    ("apikey", "not a key", "reporting.bugsnag.apikey: expected the project's API key"),
    ("endpoint", "notify.example.com", "reporting.bugsnag.endpoint: expected an http(s) URL"),
    ("endpoint", "ftp://notify.example.com", "reporting.bugsnag.endpoint: expected an http(s) URL"),
    ("releasestages", "x", "unknown key 'reporting.bugsnag.releasestages' (did you mean 'reporting.bugsnag.releasestage'?)"),
])
def test_bad_and_moved_settings_name_the_key(key, value, message):
    settings = {"apikey": APIKEY, key: value}
    with pytest.raises(ConfigError) as info:
        create_app(config={"storage": {"inmemory": {}}, "reporting": {"bugsnag": settings}}, environ={})
    assert message in str(info.value)
    assert "https://key@" not in str(info.value)  # a moved DSN is not echoed


def test_a_moved_key_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError) as info:
        create_app(config={"storage": {"inmemory": {}}},
                   environ={"CARGOHOLD_REPORTING_BUGSNAG_DSN": "https://key@errors.example.com/42"})
    assert "reporting.bugsnag.dsn: moved to reporting.sentry.dsn" in str(info.value)
    assert "CARGOHOLD_REPORTING_BUGSNAG_DSN" in str(info.value)


def test_settings_come_from_the_environment():
    app = create_app(config={"storage": {"inmemory": {}}}, environ={
        "CARGOHOLD_REPORTING_BUGSNAG_APIKEY": APIKEY,
        "CARGOHOLD_REPORTING_BUGSNAG_RELEASESTAGE": "ci",
        "CARGOHOLD_REPORTING_BUGSNAG_ENDPOINT": "http://127.0.0.1:9/notify",
    })
    try:
        configuration = plugin.reporter(app).client.configuration
        assert (configuration.api_key, configuration.release_stage, configuration.endpoint) == \
            (APIKEY, "ci", "http://127.0.0.1:9/notify")
    finally:
        app.cargohold_shutdown()


def test_delivery_queue_is_bounded():
    """With the endpoint hanging, one payload is being posted and ``limit``
    wait; the rest are dropped, and close() returns after its timeout."""

    class Config:
        api_key = APIKEY

    with SilentEndpoint() as silent:
        Config.endpoint = silent.url
        delivery = BackgroundDelivery(timeout=2.0, limit=3)
        for i in range(6):
            delivery.deliver(Config, json.dumps({"events": [i]}))
        assert delivery.dropped == 3
        assert delivery.flush(0.2) is False
        delivery.close(0.2)
        delivery.deliver(Config, "{}")
        assert delivery.dropped == 4  # closed: nothing more is queued
