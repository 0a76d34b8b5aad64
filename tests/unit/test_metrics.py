"""The metrics tallies: recording, exposition, and adding up worker processes."""

from __future__ import annotations

import json
import os

from prometheus_client.parser import text_string_to_metric_families

from cargohold import metrics as metrics_module
from cargohold.metrics import BUCKETS, SHARED_DIR_ENV, RegistryMetrics, merge_snapshots, worker_exited
from cargohold.request_context import redact_query


def parsed(m: RegistryMetrics) -> dict:
    out = {}
    for family in text_string_to_metric_families(m.exposition()[0].decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_histogram_buckets_are_cumulative():
    m = RegistryMetrics()
    for seconds in (0.0005, 0.003, 0.003, 2.0, 1000.0):
        m.request("v2.get_blob", "GET", 200, seconds)
    got = parsed(m)

    def bucket(le):
        return got[("cargohold_http_request_duration_seconds_bucket", (("le", le), ("route", "v2.get_blob")))]

    assert bucket("0.001") == 1
    assert bucket("0.005") == 3
    assert bucket("1.0") == 3
    assert bucket("2.5") == 4
    assert bucket("300.0") == 4
    assert bucket("+Inf") == 5
    assert got[("cargohold_http_request_duration_seconds_count", (("route", "v2.get_blob"),))] == 5
    assert abs(got[("cargohold_http_request_duration_seconds_sum", (("route", "v2.get_blob"),))] - 1002.0065) < 1e-9


def test_a_bucket_bound_counts_into_its_own_bucket():
    m = RegistryMetrics()
    m.storage_operation("s3", "stat", BUCKETS[0])
    got = parsed(m)
    key = ("cargohold_storage_operation_duration_seconds_bucket",
           (("driver", "s3"), ("le", repr(BUCKETS[0])), ("operation", "stat")))
    assert got[key] == 1  # le means "less than or equal"


def test_snapshots_add_up_and_gauges_combine_as_declared():
    a, b = RegistryMetrics(), RegistryMetrics()
    a.request("v2.base", "GET", 200, 0.01, 0, 2)
    b.request("v2.base", "GET", 200, 0.02, 0, 2)
    b.request("v2.base", "GET", 401, 0.02)
    a.upload_started()
    b.upload_started()
    b.upload_started()
    b.notification_queue_depth("hook", 9)
    a.notification_queue_depth("hook", 4)  # reported last: the queue's depth now
    merged = merge_snapshots([json.loads(json.dumps(a.snapshot())), json.loads(json.dumps(b.snapshot()))])
    assert merged["counters"]["http_requests"] == {("v2.base", "GET", 200): 2, ("v2.base", "GET", 401): 1}
    assert merged["counters"]["http_response_bytes"] == {("v2.base",): 4}
    latency = merged["histograms"]["http_request_duration_seconds"][("v2.base",)]
    assert sum(latency[:-1]) == 3 and abs(latency[-1] - 0.05) < 1e-9
    assert merged["gauges"]["uploads_in_flight"] == {(): 3}
    [(key, (depth, _))] = merged["gauges"]["notification_queue_depth"].items()
    assert key == ("hook",) and depth == 4


def test_a_scrape_adds_the_other_workers_snapshots(tmp_path, monkeypatch):
    other = RegistryMetrics(str(tmp_path))
    other.request("v2.get_manifest", "GET", 200, 0.01)
    other.upload_started()
    monkeypatch.setattr(os, "getpid", lambda: 111)
    other.flush()
    monkeypatch.setattr(os, "getpid", lambda: 222)
    mine = RegistryMetrics(str(tmp_path))
    mine.request("v2.get_manifest", "GET", 200, 0.01)
    mine.flush()
    mine.request("v2.get_manifest", "GET", 200, 0.01)  # live tallies count, not the stale own snapshot

    got = parsed(mine)
    key = ("cargohold_http_requests_total", (("method", "GET"), ("route", "v2.get_manifest"), ("status", "200")))
    assert got[key] == 3
    assert got[("cargohold_uploads_in_flight", ())] == 1

    # The other worker exits: its counters stay, its gauges go.
    monkeypatch.setenv(SHARED_DIR_ENV, str(tmp_path))
    worker_exited(111)
    got = parsed(mine)
    assert got[key] == 3
    assert got[("cargohold_uploads_in_flight", ())] == 0


def test_unreadable_snapshots_are_skipped(tmp_path):
    (tmp_path / "999.json").write_text("{not json")
    m = RegistryMetrics(str(tmp_path))
    m.request("v2.base", "GET", 200, 0.001)
    assert parsed(m)[("cargohold_http_requests_total",
                      (("method", "GET"), ("route", "v2.base"), ("status", "200")))] == 1


def test_shared_directory_lifecycle():
    with metrics_module.shared_between_workers() as directory:
        assert os.environ[SHARED_DIR_ENV] == directory and os.path.isdir(directory)
        m = RegistryMetrics.from_environ()
        assert m.shared_dir == directory
        m.flush()
        assert os.listdir(directory) == [f"{os.getpid()}.json"]
    assert SHARED_DIR_ENV not in os.environ and not os.path.exists(directory)


def test_redact_query_hides_credential_parameters():
    assert redact_query("") == ""
    assert redact_query("n=10&last=a") == "n=10&last=a"
    assert redact_query("service=r&password=hunter2&n=1") == "service=r&password=***&n=1"
    assert redact_query("X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F1&x=1") == \
        "X-Amz-Signature=***&X-Amz-Credential=***&x=1"
    assert "s3cr3t" not in redact_query("access_token=s3cr3t&scope=repository:a:pull")
