"""A reference registry's ``reporting`` section, Bugsnag and New Relic keys
as its configuration documents them, starts ``cargohold serve`` unchanged.

Nothing leaves the machine: Bugsnag's ``endpoint`` is a local receiver, and
the New Relic agent (a license key, no developer mode, as a reference config
has it) is pointed at 127.0.0.1 with its own ``NEW_RELIC_HOST`` and
``NEW_RELIC_PORT`` variables, where a listener takes its connections and
closes them.  The agent contacts its collector host first (``preconnect``,
over TLS); that fails, so it never gets as far as the cloud-metadata probes
it makes when connecting, and keeps retrying in the background."""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from cargohold.testing.reporting import ReportReceiver, decoded_body
from cargohold.testing.server import LiveRegistry, free_port

APIKEY = "0123456789abcdef0123456789abcdef"
LICENSE_KEY = "0123456789abcdef0123456789abcdef01234567"

REFERENCE_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
http:
  addr: 127.0.0.1:{port}
reporting:
  bugsnag:
    apikey: {apikey}
    releasestage: staging
    endpoint: {endpoint}
  newrelic:
    licensekey: {license_key}
    name: cargohold-reference
    verbose: true
"""


class ClosingListener:
    """A loopback port that accepts connections, counts and closes them."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            self.accepted += 1
            conn.close()

    def close(self):
        self.sock.close()


def status(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_reference_reporting_section_starts_cargohold_unchanged(tmp_path):
    if importlib.util.find_spec("cargohold_report_newrelic") is None:
        pytest.fail("the New Relic plugin is needed: pip install -e plugins/cargohold-report-newrelic")
    collector = ClosingListener()
    with ReportReceiver() as receiver:
        root, port = tmp_path / "data", free_port()
        config = tmp_path / "config.yml"
        config.write_text(REFERENCE_CONFIG.format(root=root, port=port, apikey=APIKEY, endpoint=receiver.url + "/",
                                                  license_key=LICENSE_KEY))
        registry = LiveRegistry(config_file=str(config), root=str(root), port=port, env={
            "CARGOHOLD_LOG_LEVEL": "info",
            "NEW_RELIC_HOST": "127.0.0.1",
            "NEW_RELIC_PORT": str(collector.port),
        })
        # The agent waits up to 10 s at start-up for a collector that is not there.
        registry.start(timeout=40)
        try:
            assert status(registry.url + "/v2/") == 200
            assert status(registry.url + "/v2/app/manifests/missing") == 404
            with registry.broken_storage():
                assert status(registry.url + "/v2/app/blobs/uploads/", method="POST") == 503
            receiver.wait_for_deliveries(1)
            registry.stop()
            with open(registry.log_path, errors="replace") as f:
                log = f.read()
        finally:
            registry.stop()
            registry.cleanup()
            collector.close()

    [delivery] = receiver.deliveries  # the 503; not the 404
    assert delivery.headers["Bugsnag-Api-Key"] == APIKEY
    [event] = json.loads(decoded_body(delivery))["events"]
    assert event["releaseStage"] == "staging" and event["context"] == "v2.start_upload"
    assert "unknown key" not in log and "Traceback" not in log.split("storage error", 1)[0], log[-4000:]
    # The agent ran (verbose: its debug log on stderr) and went to 127.0.0.1.
    assert "New Relic agent reporting as 'cargohold-reference'" in log
    assert "newrelic.core.agent DEBUG" in log
    assert collector.accepted >= 1, "the agent did not try its collector at 127.0.0.1"
    assert "newrelic.com" not in log, [line for line in log.splitlines() if "newrelic.com" in line][:5]
