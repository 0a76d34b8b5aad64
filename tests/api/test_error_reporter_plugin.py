"""cargohold.reporting.ErrorReporterPlugin: the hooks an error-reporting
plugin gets from the core, driven with a reporter that records calls."""

from __future__ import annotations

import pytest

from cargohold.config import ConfigError, HttpUrl
from cargohold.reporting import ErrorReporterPlugin

from .conftest import BASE_CONFIG


class Recorder:
    def __init__(self, settings):
        self.settings = settings
        self.reports = []
        self.closed = False

    def report(self, error, request_info):
        self.reports.append((error, request_info))

    def close(self):
        self.closed = True


def make_plugin(**kwargs):
    return ErrorReporterPlugin("recorder", {"apikey": str, "endpoint": HttpUrl()}, required="apikey",
                               start=Recorder, **kwargs)


def config(**settings):
    return {**BASE_CONFIG, "reporting": {"recorder": settings}}


def test_the_reporter_starts_when_its_required_key_is_set(make_app):
    plugin = make_plugin()
    assert plugin.reporter(make_app(config(endpoint="http://127.0.0.1:9/x"), plugins=[plugin])) is None
    assert plugin.reporter(make_app(config(apikey=""), plugins=[plugin])) is None
    app = make_app(config(apikey="k", endpoint=" http://127.0.0.1:9/x "), plugins=[plugin])
    assert plugin.reporter(app).settings == {"apikey": "k", "endpoint": "http://127.0.0.1:9/x"}


def test_its_section_is_checked(make_app):
    with pytest.raises(ConfigError) as info:
        make_app(config(apikey="k", endpoint="ftp://x", other=1), plugins=[make_plugin()])
    assert "reporting.recorder.endpoint: expected an http(s) URL" in str(info.value)
    assert "unknown key 'reporting.recorder.other'" in str(info.value)


def test_unhandled_errors_reach_the_reporter_and_shutdown_closes_it(make_app, monkeypatch):
    plugin = make_plugin()
    app = make_app(config(apikey="k"), plugins=[plugin])
    reporter = plugin.reporter(app)

    def tags(name):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["cargohold"].registry.manifests, "tags", tags)
    client = app.test_client()
    assert client.get("/v2/app/tags/list", headers={"X-Request-Id": "r-1"}).status_code == 500
    assert client.get("/v2/app/manifests/missing").status_code == 404
    [(error, info)] = reporter.reports
    assert str(error) == "boom" and info["id"] == "r-1" and info["endpoint"] == "v2.tags_list"
    app.cargohold_shutdown()
    assert reporter.closed and plugin.reporter(app) is None


@pytest.mark.parametrize("value, ok", [
    ("https://notify.example.com", True), ("http://127.0.0.1:9/notify", True), ("", True),
    ("notify.example.com", False), ("ftp://x.example.com", False), ("https://:9/x", False),
    ("https://u@x.example.com/", False), ("http://x.example.com:0/", False), ("http://x:99999/", False), (7, False),
])
def test_http_url_values(value, ok):
    if ok:
        assert HttpUrl().coerce(value) == value
    else:
        with pytest.raises(ValueError, match="expected an http"):
            HttpUrl().coerce(value)
    assert HttpUrl(userinfo=True).coerce("https://key@x.example.com/1") == "https://key@x.example.com/1"
