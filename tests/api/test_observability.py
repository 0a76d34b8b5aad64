"""Observability through the app: Prometheus metrics (scraped and parsed
with prometheus-client's parser), readiness, request ids, and where the
operational endpoints are served."""

from __future__ import annotations

import io
import json
import re
import shutil

import gevent
import pytest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from cargohold import health as health_module
from cargohold import hookimpl
from cargohold.auth import Access, AuthProvider, Challenge, Forbidden, Grant
from cargohold.config import ConfigError
from cargohold.errors import MethodNotAllowed, NotFound
from cargohold.storage.driver import PathNotFound, StorageError
from cargohold.storage.inmemory import InMemoryDriver
from cargohold.testing.plugin import BufferedClient

from .conftest import BASE_CONFIG
from .helpers import digest_of, error_code, push_blob

GENERATED_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")


def buffered_client(app) -> BufferedClient:
    return BufferedClient(app, app.response_class, use_cookies=False)


@pytest.fixture
def client(app):
    return buffered_client(app)


def scrape(client, path: str = "/metrics", **kw) -> dict:
    """``{sample name: {frozenset(labels.items()): value}}`` of one scrape."""
    resp = client.get(path, **kw)
    assert resp.status_code == 200, resp.data
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return samples(resp.get_data(as_text=True))


def samples(text: str) -> dict:
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return out


def value(scraped: dict, name: str, **labels) -> float:
    return scraped.get(name, {}).get(frozenset((k, str(v)) for k, v in labels.items()), 0.0)


def with_config(**sections) -> dict:
    cfg = json.loads(json.dumps(BASE_CONFIG))
    for key, val in sections.items():
        cfg[key] = val
    return cfg


# -- metrics ----------------------------------------------------------------------


def test_requests_are_counted_by_route_method_and_status(client):
    before = scrape(client)
    assert client.get("/v2/").status_code == 200
    assert client.get("/v2/").status_code == 200
    assert client.get("/v2/app/manifests/nope").status_code == 404
    assert client.head("/v2/app/blobs/sha256:" + "0" * 64).status_code == 404
    assert client.get("/no/such/route").status_code == 404
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    total = "cargohold_http_requests_total"
    assert delta(total, route="v2.base", method="GET", status=200) == 2
    assert delta(total, route="v2.get_manifest", method="GET", status=404) == 1
    assert delta(total, route="v2.get_blob", method="HEAD", status=404) == 1
    assert delta(total, route="unmatched", method="GET", status=404) == 1
    # The first scrape itself was counted once it finished.
    assert delta(total, route="ops.metrics", method="GET", status=200) == 1
    assert delta("cargohold_http_request_duration_seconds_count", route="v2.base") == 2
    assert delta("cargohold_http_request_duration_seconds_bucket", route="v2.base", le="+Inf") == 2
    assert delta("cargohold_http_request_duration_seconds_sum", route="v2.base") > 0
    # Labels name routes, never raw paths.
    for series in after.values():
        for labels in series:
            assert not any(v.startswith("/") for _, v in labels), labels


def test_unusual_methods_share_one_label(client):
    client.open("/v2/", method="BREW")
    scraped = scrape(client)
    assert value(scraped, "cargohold_http_requests_total", route="unmatched", method="OTHER", status=405) == 1
    assert not any(("method", "BREW") in labels for labels in scraped["cargohold_http_requests_total"])


def test_body_bytes_and_storage_operations_are_measured(client):
    data = b"x" * 300_000
    digest = push_blob(client, "app", data)
    resp = client.get(f"/v2/app/blobs/{digest}")
    assert resp.status_code == 200 and resp.data == data
    scraped = scrape(client)

    uploaded = sum(value(scraped, "cargohold_http_request_bytes_total", route=r)
                   for r in ("v2.start_upload", "v2.upload_chunk", "v2.finish_upload"))
    assert uploaded == len(data)
    assert value(scraped, "cargohold_http_response_bytes_total", route="v2.get_blob") == len(data)
    storage = "cargohold_storage_operation_duration_seconds_count"
    assert value(scraped, storage, driver="inmemory", operation="writer.write") >= 1
    assert value(scraped, storage, driver="inmemory", operation="writer.commit") >= 1
    assert value(scraped, storage, driver="inmemory", operation="reader.read") >= 1


def test_uploads_in_flight_while_a_body_streams(app, client):
    metrics = app.extensions["cargohold"].metrics
    seen = []

    class WatchedBody(io.BytesIO):
        """Reports the gauge from inside the request, as the body is read."""

        def _seen(self):
            seen.append(value(samples(metrics.exposition()[0].decode()), "cargohold_uploads_in_flight"))

        def read(self, *args):
            self._seen()
            return super().read(*args)

        def readinto(self, buffer):
            self._seen()
            return super().readinto(buffer)

    data = b"y" * 5000
    resp = client.post(f"/v2/app/blobs/uploads/?digest={digest_of(data)}", input_stream=WatchedBody(data),
                       headers={"Content-Length": str(len(data)), "Content-Type": "application/octet-stream"})
    assert resp.status_code == 201
    assert seen and set(seen) == {1.0}
    assert value(scrape(client), "cargohold_uploads_in_flight") == 0


def test_notification_metrics(state, client):
    state.metrics.notification_queue_depth("audit", 7)
    state.metrics.notification_queue_depth("audit", 3)
    state.metrics.notification_failure("audit")
    state.metrics.notification_failure("audit")
    scraped = scrape(client)
    assert value(scraped, "cargohold_notification_queue_depth", endpoint="audit") == 3
    assert value(scraped, "cargohold_notification_failures_total", endpoint="audit") == 2


class PluginGauge:
    def collect(self):
        family = GaugeMetricFamily("plugin_things", "Things a plugin counts", labels=["kind"])
        family.add_metric(["a"], 42)
        yield family


class BrokenCollector:
    def collect(self):
        raise RuntimeError("collector bug")
        yield


def test_plugin_collectors_are_served_and_a_broken_one_costs_only_itself(state, client, caplog):
    state.metrics.add_collector(BrokenCollector())
    state.metrics.add_collector(PluginGauge())
    scraped = scrape(client)
    assert value(scraped, "plugin_things", kind="a") == 42
    assert value(scraped, "cargohold_uploads_in_flight") == 0
    assert "collector bug" in caplog.text


class MetricsAuth:
    """Grants registry:metrics:* to "ops" only; challenges anonymous callers."""

    name = "metrics-auth"

    def __init__(self):
        self.asked = []

    @hookimpl
    def cargohold_auth_providers(self):
        plugin = self

        class Provider(AuthProvider):
            def authorize(self, request, access):
                plugin.asked.append(list(access))
                user = request.headers.get("X-User")
                if user is None:
                    raise Challenge('Basic realm="test"')
                if user == "broken":
                    raise RuntimeError("provider bug")
                if any(a.type == "registry" and a.name == "metrics" for a in access) and user != "ops":
                    raise Forbidden("not an operator")
                return Grant(user=user)

        return {"metrics-auth": lambda params: Provider()}


def test_metrics_need_the_auth_providers_grant_when_auth_is_on(make_app):
    auth = MetricsAuth()
    app = make_app(with_config(auth={"metrics-auth": {}}), plugins=[auth])
    client = buffered_client(app)

    resp = client.get("/metrics")
    assert resp.status_code == 401 and error_code(resp) == "UNAUTHORIZED"
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="test"'
    assert auth.asked[-1] == [Access("registry", "metrics", ("*",))]
    resp = client.get("/metrics", headers={"X-User": "alice"})
    assert resp.status_code == 403 and error_code(resp) == "DENIED"
    resp = client.get("/metrics", headers={"X-User": "broken"})  # fails closed
    assert resp.status_code == 403 and error_code(resp) == "DENIED"
    assert "cargohold_http_requests_total" in scrape(client, headers={"X-User": "ops"})
    # Probes cannot authenticate: readiness stays open.
    assert client.get("/healthz").status_code == 200


def test_metrics_can_be_turned_off_or_moved(make_app):
    off = buffered_client(make_app(with_config(http={"debug": {"prometheus": {"enabled": False}}})))
    resp = off.get("/metrics")
    assert resp.status_code == 404 and error_code(resp) == NotFound.code
    moved = buffered_client(make_app(with_config(http={"debug": {"prometheus": {"path": "/internal/prom"}}})))
    assert moved.get("/metrics").status_code == 404
    assert "cargohold_uploads_in_flight" in scrape(moved, "/internal/prom")


def test_prefix_applies_to_the_operational_endpoints(make_app):
    client = buffered_client(make_app(with_config(http={"prefix": "/registry"})))
    assert client.get("/registry/healthz").get_json() == {"status": "ok", "checks": {"storage": "ok"}}
    assert "cargohold_http_requests_total" in scrape(client, "/registry/metrics")


@pytest.mark.parametrize("key, val, message", [
    ("addr", "nonsense", "http.debug.addr: expected host:port"),
    ("prometheus", {"path": "metrics"}, "http.debug.prometheus.path: must start with '/'"),
    ("prometheus", {"path": "/v2/metrics"}, "http.debug.prometheus.path: must start with '/' and stay outside /v2/"),
    ("prometheus", {"enabled": "sometimes"}, "http.debug.prometheus.enabled: expected a boolean"),
    ("pprof", {}, "unknown key 'http.debug.pprof'"),
])
def test_bad_debug_settings_name_the_key(make_app, key, val, message):
    with pytest.raises(ConfigError) as info:
        make_app(with_config(http={"debug": {key: val}}))
    assert message in str(info.value)


# -- the debug address ----------------------------------------------------------------


def test_with_a_debug_address_the_endpoints_move_there(make_app):
    app = make_app(with_config(http={"debug": {"addr": "127.0.0.1:5001"}}))
    main = buffered_client(app)
    assert main.get("/metrics").status_code == 404
    assert main.get("/healthz").status_code == 404
    assert main.get("/v2/").status_code == 200

    debug = Client(app.cargohold_debug_app)
    resp = debug.get("/metrics")
    assert resp.status_code == 200
    scraped = samples(resp.get_data(as_text=True))
    assert value(scraped, "cargohold_http_requests_total", route="unmatched", method="GET", status=404) == 2
    assert value(scraped, "cargohold_http_requests_total", route="v2.base", method="GET", status=200) == 1
    for path in ("/healthz", "/debug/health"):
        resp = debug.get(path)
        assert resp.status_code == 200 and resp.json == {"status": "ok", "checks": {"storage": "ok"}}
    assert debug.head("/healthz").status_code == 200
    resp = debug.get("/v2/")
    assert resp.status_code == 404 and resp.json["errors"][0]["code"] == NotFound.code
    resp = debug.post("/metrics")
    assert resp.status_code == 405 and resp.json["errors"][0]["code"] == MethodNotAllowed.code


def test_debug_address_from_the_environment(monkeypatch):
    from cargohold.app import create_app

    app = create_app(config={"storage": {"inmemory": {}}},
                     environ={"CARGOHOLD_HTTP_DEBUG_ADDR": "127.0.0.1:5001",
                              "CARGOHOLD_HTTP_DEBUG_PROMETHEUS_PATH": "/prom"})
    assert app.config["CARGOHOLD"]["http"]["debug"] == {"addr": "127.0.0.1:5001",
                                                       "prometheus": {"enabled": True, "path": "/prom"}}
    assert Client(app.cargohold_debug_app).get("/prom").status_code == 200


# -- readiness ----------------------------------------------------------------------------


class FailingList(InMemoryDriver):
    def __init__(self):
        super().__init__()
        self.fail = None

    def list(self, path):
        if self.fail == "error":
            raise StorageError("connection refused by storage.internal:9000")
        if self.fail == "hang":
            gevent.sleep(30)
        return super().list(path)


class FailingStorage:
    name = "failing-storage"

    def __init__(self):
        self.driver = FailingList()

    @hookimpl
    def cargohold_storage_drivers(self):
        return {"failing": lambda params: self.driver}


def test_healthz_reports_the_storage_backend(make_app, monkeypatch):
    storage = FailingStorage()
    cfg = {"storage": {"failing": {}}}
    client = buffered_client(make_app(cfg, plugins=[storage]))
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok", "checks": {"storage": "ok"}}
    assert resp.headers["Cache-Control"] == "no-store"

    storage.driver.fail = "error"
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json() == {"status": "unavailable",
                               "checks": {"storage": "the inmemory storage backend failed (StorageError)"}}
    assert b"storage.internal" not in resp.data  # details only on the debug address

    storage.driver.fail = "hang"
    monkeypatch.setattr(health_module, "STORAGE_TIMEOUT", 0.2)
    resp = client.get("/healthz")
    assert resp.status_code == 503
    assert resp.get_json()["checks"] == {"storage": "the inmemory storage backend did not answer within 0.2s"}

    storage.driver.fail = None
    assert client.get("/healthz").status_code == 200


def test_debug_healthz_gives_the_error_detail(make_app):
    storage = FailingStorage()
    app = make_app({"storage": {"failing": {}}, "http": {"debug": {"addr": "127.0.0.1:5001"}}}, plugins=[storage])
    storage.driver.fail = "error"
    resp = Client(app.cargohold_debug_app).get("/debug/health")
    assert resp.status_code == 503
    [detail] = resp.json["checks"].values()
    assert "connection refused by storage.internal:9000" in detail


def test_a_storage_root_that_does_not_exist_yet_is_ready(make_app, tmp_path):
    """A new filesystem registry whose root directory is not there (yet)."""
    root = tmp_path / "registry"
    app = make_app({"storage": {"filesystem": {"rootdirectory": str(root)}}})
    shutil.rmtree(root, ignore_errors=True)  # the driver may have created it
    with pytest.raises(PathNotFound):
        app.extensions["cargohold"].driver.list("/")
    resp = buffered_client(app).get("/healthz")
    assert resp.status_code == 200 and resp.get_json()["status"] == "ok"


# -- request ids ------------------------------------------------------------------------------


def test_every_response_carries_a_request_id(client):
    ids = {client.get("/v2/").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3 and all(GENERATED_ID.fullmatch(i) for i in ids)
    resp = client.get("/v2/nope/tags/list")
    assert resp.status_code == 404 and GENERATED_ID.fullmatch(resp.headers["X-Request-Id"])


def test_a_clients_request_id_is_kept_if_it_looks_like_one(client):
    assert client.get("/v2/", headers={"X-Request-Id": "lb-7f3a:22"}).headers["X-Request-Id"] == "lb-7f3a:22"
    for bad in ("two words", "x" * 200, "<script>", "-leading-dash"):
        rid = client.get("/v2/", headers={"X-Request-Id": bad}).headers["X-Request-Id"]
        assert GENERATED_ID.fullmatch(rid), (bad, rid)


def test_reporters_get_the_same_request_id_and_the_user(make_app):
    seen = []

    class Reporter:
        @hookimpl
        def cargohold_request_finished(self, request_info):
            seen.append(request_info)

    client = buffered_client(make_app(plugins=[Reporter()]))
    resp = client.get("/v2/", headers={"X-Request-Id": "abc-1"})
    assert seen[-1]["id"] == resp.headers["X-Request-Id"] == "abc-1"
    assert seen[-1]["user"] is None
