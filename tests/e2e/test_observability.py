"""Observability of a real ``cargohold serve``: metrics summed over worker
processes, the debug address, readiness when storage breaks, and the logs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from cargohold.metrics import FLUSH_INTERVAL
from cargohold.testing.server import LiveRegistry, free_port

PASSWORD = "hunter2-5ec7e7"
BASIC = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()


def scrape(url: str) -> dict:
    resp = requests.get(url, timeout=10, headers={"Connection": "close"})
    assert resp.status_code == 200, resp.text
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def base_requests(scraped: dict) -> float:
    return scraped.get(("cargohold_http_requests_total",
                        frozenset({("route", "v2.base"), ("method", "GET"), ("status", "200")})), 0.0)


def access_lines(registry: LiveRegistry) -> list[dict]:
    lines = []
    for line in registry.log().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry["logger"] == "cargohold.access":
                lines.append(entry)
    return lines


def workers_of(registry: LiveRegistry) -> list[int]:
    """The worker processes' pids (children of the supervisor)."""
    with open(f"/proc/{registry.proc.pid}/task/{registry.proc.pid}/children") as f:
        return [int(p) for p in f.read().split()]


def wait_for_flush() -> None:
    time.sleep(FLUSH_INTERVAL * 2 + 0.3)


@pytest.fixture
def two_workers():
    with LiveRegistry(env={"CARGOHOLD_HTTP_WORKERS": "2", "CARGOHOLD_LOG_LEVEL": "info",
                           "CARGOHOLD_LOG_FORMATTER": "json"}) as live:
        yield live


def test_metrics_add_up_over_two_workers(two_workers):
    registry = two_workers
    wait_for_flush()
    before = base_requests(scrape(registry.url + "/metrics"))

    def get_base(_) -> int:
        return requests.get(registry.url + "/v2/", headers={"Connection": "close"}, timeout=10).status_code

    # The kernel picks which worker accepts a connection: concurrent new
    # connections, in rounds until both workers have served some.
    sent, pids = 0, set()
    with ThreadPoolExecutor(8) as pool:
        for _ in range(25):
            assert set(pool.map(get_base, range(16))) == {200}
            sent += 16
            time.sleep(0.05)  # the access lines are written
            pids = {e["pid"] for e in access_lines(registry) if e["path"] == "/v2/"}
            if len(pids) == 2:
                break
    assert len(pids) == 2, f"only worker(s) {pids} served {sent} connections; the sum was not exercised"
    wait_for_flush()
    # Each scrape is answered by either worker; every one sees them all.
    for _ in range(6):
        assert base_requests(scrape(registry.url + "/metrics")) - before == sent


def test_a_restarted_workers_counts_are_kept(two_workers):
    registry = two_workers
    for _ in range(40):
        requests.get(registry.url + "/v2/", headers={"Connection": "close"}, timeout=10)
    wait_for_flush()
    counted = base_requests(scrape(registry.url + "/metrics"))
    victim = workers_of(registry)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (victim in workers_of(registry) or len(workers_of(registry)) < 2):
        time.sleep(0.1)
    assert victim not in workers_of(registry) and len(workers_of(registry)) == 2
    time.sleep(1.0)  # the replacement serves
    for _ in range(4):
        assert base_requests(scrape(registry.url + "/metrics")) >= counted


def test_debug_address_serves_metrics_and_health_not_the_main_one():
    debug_port = free_port()
    with LiveRegistry(env={"CARGOHOLD_HTTP_WORKERS": "2",
                           "CARGOHOLD_HTTP_DEBUG_ADDR": f"127.0.0.1:{debug_port}"}) as registry:
        debug = f"http://127.0.0.1:{debug_port}"
        assert requests.get(registry.url + "/metrics", timeout=10).status_code == 404
        assert requests.get(registry.url + "/healthz", timeout=10).status_code == 404
        for _ in range(5):
            requests.get(registry.url + "/v2/", timeout=10)
        resp = requests.get(debug + "/healthz", timeout=10)
        assert resp.status_code == 200 and resp.json() == {"status": "ok", "checks": {"storage": "ok"}}
        assert requests.get(debug + "/debug/health", timeout=10).status_code == 200
        wait_for_flush()
        assert base_requests(scrape(debug + "/metrics")) >= 5
        assert requests.get(debug + "/v2/", timeout=10).status_code == 404


def test_healthz_turns_503_when_storage_breaks_and_recovers():
    with LiveRegistry() as registry:
        resp = requests.get(registry.url + "/healthz", timeout=10)
        assert resp.status_code == 200 and resp.json()["status"] == "ok"
        # A storage root nobody can list: a symlink pointing at itself.
        shutil.rmtree(registry.root)
        os.symlink(registry.root, registry.root)
        try:
            resp = requests.get(registry.url + "/healthz", timeout=10)
            assert resp.status_code == 503
            assert resp.json() == {"status": "unavailable",
                                   "checks": {"storage": "the filesystem storage backend failed (StorageError)"}}
        finally:
            os.unlink(registry.root)
            os.mkdir(registry.root)
        assert requests.get(registry.url + "/healthz", timeout=10).status_code == 200


def test_json_access_log_has_the_request_fields_and_no_credentials():
    with LiveRegistry(env={"CARGOHOLD_LOG_LEVEL": "info", "CARGOHOLD_LOG_FORMATTER": "json",
                           "CARGOHOLD_LOG_FIELDS_SERVICE": "registry",
                           "CARGOHOLD_LOG_FIELDS_ENVIRONMENT": "ci"}) as registry:
        resp = requests.get(f"{registry.url}/v2/app/tags/list?n=5&password={PASSWORD}", timeout=10,
                            headers={"Authorization": f"Basic {BASIC}", "Cookie": f"s={PASSWORD}",
                                     "User-Agent": "obs-test/2.0", "X-Request-Id": "obs-1"})
        assert resp.status_code == 404 and resp.headers["X-Request-Id"] == "obs-1"
        resp = requests.get(registry.url + "/v2/", timeout=10)
        generated = resp.headers["X-Request-Id"]
        # A malformed request after a good one on the same connection: its
        # line must not repeat the good one's id, agent or path.
        with socket.create_connection(("127.0.0.1", registry.port), timeout=10) as sock:
            sock.sendall(b"GET /v2/?token=abc HTTP/1.1\r\nHost: x\r\nUser-Agent: first/1\r\n"
                         b"X-Request-Id: good-1\r\n\r\nNONSENSE\r\n\r\n")
            received = b""
            while received.count(b"HTTP/1.1 ") < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
        assert b"HTTP/1.1 200" in received and b"HTTP/1.1 400" in received
        registry.stop()
        log = registry.log()
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line is JSON
    assert all(e["service"] == "registry" and e["environment"] == "ci" for e in entries)
    [tags] = [e for e in entries if e["logger"] == "cargohold.access" and e.get("request_id") == "obs-1"]
    assert tags["method"] == "GET" and tags["status"] == 404
    assert tags["path"] == "/v2/app/tags/list?n=5&password=***"
    assert tags["user_agent"] == "obs-test/2.0" and tags["remote_addr"] == "127.0.0.1"
    assert tags["bytes_out"] > 0 and tags["duration_ms"] >= 0 and tags["protocol"] == "HTTP/1.1"
    assert any(e.get("request_id") == generated for e in entries)
    [good] = [e for e in entries if e.get("request_id") == "good-1"]
    assert good["path"] == "/v2/?token=***" and good["user_agent"] == "first/1"
    [bad] = [e for e in entries if e["logger"] == "cargohold.access" and e.get("status") == 400]
    assert bad["path"] == "NONSENSE" and bad["method"] == "-" and bad["user_agent"] is None
    assert "request_id" not in bad
    assert PASSWORD not in log and BASIC not in log


def test_text_log_lines_carry_request_id_and_fields_and_the_access_log_can_be_off(tmp_path):
    with LiveRegistry(env={"CARGOHOLD_LOG_LEVEL": "info", "CARGOHOLD_LOG_FIELDS_SERVICE": "registry"}) as registry:
        rid = requests.get(registry.url + "/v2/", timeout=10).headers["X-Request-Id"]
        registry.stop()
        lines = [line for line in registry.log().splitlines() if " cargohold.access: " in line]
    [line] = [line for line in lines if f"request_id={rid}" in line]
    assert '"GET /v2/ HTTP/1.1" 200' in line and line.endswith(" service=registry")

    with LiveRegistry(env={"CARGOHOLD_LOG_LEVEL": "info", "CARGOHOLD_LOG_ACCESSLOG_DISABLED": "true"}) as registry:
        requests.get(registry.url + "/v2/", timeout=10)
        registry.stop()
        assert " cargohold.access: " not in registry.log()
        assert "listening on" in registry.log()
