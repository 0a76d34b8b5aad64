"""The New Relic plugin with the real agent in developer mode: a live
``cargohold serve`` runs it (no network; the agent answers itself as its
collector) and writes every payload it would send to its audit log, which
the tests read back after the last harvest at shutdown."""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import urllib.error
import urllib.request

import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.testing.server import LiveRegistry

PASSWORD = "hunter2-c0ffee"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
SEPARATOR = "=" * 78


def harvest(audit_log: str) -> dict[str, list]:
    """What the agent sent, by collector method: ``{method: [payload, ...]}``.
    Each audit record has ``PARAMS: {...}`` (naming the method) and
    ``DATA: <payload>``, both Python literals."""
    sent: dict[str, list] = {}
    with open(audit_log) as f:
        records = f.read().split(SEPARATOR)
    for record in records:
        if "PARAMS: " not in record or "DATA: " not in record:
            continue  # a response record
        params = ast.literal_eval(record.split("PARAMS: ", 1)[1].split("\n", 1)[0])
        data = ast.literal_eval(record.split("DATA: ", 1)[1].strip())
        sent.setdefault(params["method"], []).append(data)
    return sent


def request(url: str, method: str = "GET", headers: dict | None = None) -> int:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


@pytest.fixture
def audit_log(tmp_path):
    return str(tmp_path / "newrelic-audit.log")


def live(audit_log: str) -> LiveRegistry:
    return LiveRegistry(env={
        "CARGOHOLD_REPORTING_NEWRELIC_DEVELOPERMODE": "true",
        "CARGOHOLD_REPORTING_NEWRELIC_NAME": "cargohold-under-test",
        "NEW_RELIC_AUDIT_LOG": audit_log,
    })


def test_transactions_are_named_per_route_and_errors_recorded(audit_log):
    credentials = {"Authorization": f"Basic {BASIC}", "Cookie": f"session={PASSWORD}"}
    registry = live(audit_log).start()
    try:
        assert request(registry.url + "/v2/", headers=credentials) == 200
        assert request(f"{registry.url}/v2/team/app/manifests/v1?password={PASSWORD}", headers=credentials) == 404
        assert request(registry.url + "/v2/team/app/tags/list") == 404
        assert request(registry.url + "/not-a-route") == 404
        assert request(registry.url + "/healthz") == 200
        with registry.broken_storage():
            assert request(registry.url + "/v2/team/app/blobs/uploads/", method="POST",
                           headers={**credentials, "X-Request-Id": "nr-err-1"}) == 503
        registry.stop()  # the agent's last harvest happens at shutdown
    finally:
        registry.stop()
        registry.cleanup()
    assert os.path.exists(audit_log), f"the agent wrote no audit log:\n{registry.log()}"
    sent = harvest(audit_log)

    [connect] = sent["connect"]
    assert connect[0]["app_name"] == ["cargohold-under-test"]
    metric_names = {m[0]["name"] for payload in sent["metric_data"] for m in payload[3]}
    for route in ("v2.base", "v2.get_manifest", "v2.tags_list", "unmatched", "ops.healthz", "v2.start_upload"):
        assert f"WebTransaction/Function/{route}" in metric_names, sorted(
            n for n in metric_names if n.startswith("WebTransaction/"))
    events = [e for payload in sent["analytic_event_data"] for e in payload[2]]
    names = [e[0]["name"] for e in events]
    assert names.count("WebTransaction/Function/v2.base") >= 1
    assert "WebTransaction/Function/v2.get_manifest" in names

    traces = [t for payload in sent["error_data"] for t in payload[1]]
    [error] = [t for t in traces if t[1] == "WebTransaction/Function/v2.start_upload"]
    assert error[3] == "cargohold.storage.driver:StorageError"
    assert error[4]["userAttributes"]["request_id"] == "nr-err-1"
    # The registry's client errors (404 MANIFEST_UNKNOWN...) are not errors.
    assert [t[1] for t in traces] == ["WebTransaction/Function/v2.start_upload"]
    # Every transaction carries its request id.
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", e[1].get("request_id", ""))
               for e in events if e[0]["name"].endswith("/v2.base"))

    with open(audit_log) as f:
        everything = f.read()
    for secret in (PASSWORD, BASIC):
        assert secret not in everything


def test_a_license_key_or_developer_mode_is_required():
    with pytest.raises(ConfigError) as info:
        create_app(config={"storage": {"inmemory": {}}, "reporting": {"newrelic": {"name": "x"}}}, environ={})
    assert "reporting.newrelic.licensekey: required" in str(info.value)


def test_unknown_settings_name_the_key():
    with pytest.raises(ConfigError) as info:
        create_app(config={"storage": {"inmemory": {}}, "reporting": {"newrelic": {"licencekey": "x"}}},
                   environ={})
    assert "unknown key 'reporting.newrelic.licencekey' (did you mean 'reporting.newrelic.licensekey'?)" \
        in str(info.value)


def test_a_bad_config_stops_serve_with_the_key_named(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text(json.dumps({"reporting": {"newrelic": {"verbose": True}}}))
    registry = LiveRegistry(config_file=str(config))
    with pytest.raises(RuntimeError) as info:
        registry.start(timeout=15)
    registry.cleanup()
    assert "reporting.newrelic.licensekey: required" in str(info.value)
