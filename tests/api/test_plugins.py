"""The plugin framework as seen from requests: policy, error rendering,
reporting, events, registration-time hooks and start-up failures."""

from __future__ import annotations

import json

import pytest
from flask import Blueprint, Response

from cargohold import hookimpl
from cargohold.auth import AuthProvider, Grant
from cargohold.config import ConfigError
from cargohold.errors import Denied
from cargohold.plugins import StartupError, describe_plugins
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound
from cargohold.storage.inmemory import InMemoryDriver

from .conftest import BASE_CONFIG
from .helpers import (
    EventLog,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_blob,
    push_image,
    put_manifest,
)

# -- policy: cargohold_before_manifest_put -------------------------------------


class DenyPushes:
    name = "deny-pushes"

    def __init__(self):
        self.seen = []

    @hookimpl
    def cargohold_before_manifest_put(self, repository, reference, manifest):
        self.seen.append((repository, reference, manifest.digest, manifest.media_type))
        raise Denied("pushes are frozen", detail={"reference": reference})


def test_policy_denial_rejects_push_and_stores_nothing(client, state):
    policy, log = DenyPushes(), EventLog()
    state.pm.register(policy)
    state.pm.register(log)
    raw = image_manifest(client, "app/web")
    digest = digest_of(raw)
    log.events.clear()

    resp = put_manifest(client, "app/web", "v1", raw)

    assert resp.status_code == 403
    assert resp.get_json()["errors"] == [
        {"code": "DENIED", "message": "pushes are frozen", "detail": {"reference": "v1"}}
    ]
    assert policy.seen == [("app/web", "v1", digest, OCI_MANIFEST)]
    assert client.get("/v2/app/web/tags/list").get_json()["tags"] == []
    for ref in (digest, "v1"):
        resp = client.get(f"/v2/app/web/manifests/{ref}")
        assert resp.status_code == 404 and error_code(resp) == "MANIFEST_UNKNOWN"
    with pytest.raises(PathNotFound):
        state.driver.stat(paths.blob_data(digest))
    assert log.events == []


def test_policy_sees_every_tag_of_a_push_by_digest(client, state):
    seen = []

    class DenyStable:
        @hookimpl
        def cargohold_before_manifest_put(self, repository, reference):
            seen.append(reference)
            if reference == "stable":
                raise Denied("stable is protected")

    state.pm.register(DenyStable())
    raw = image_manifest(client, "app")
    digest = digest_of(raw)

    resp = put_manifest(client, "app", digest, raw, query_string=[("tag", "edge"), ("tag", "stable")])

    assert resp.status_code == 403 and error_code(resp) == "DENIED"
    assert seen == ["edge", "stable"]
    # One refused tag refuses the whole push: not even the allowed tag is written.
    assert client.get("/v2/app/tags/list").get_json()["tags"] == []
    assert client.head(f"/v2/app/manifests/{digest}").status_code == 404

    seen.clear()
    assert put_manifest(client, "app", digest, raw).status_code == 201
    assert seen == [digest]


def test_policy_that_returns_allows_the_push(client, state):
    seen = []

    class Audit:
        @hookimpl
        def cargohold_before_manifest_put(self, repository, reference):
            seen.append((repository, reference))

    state.pm.register(Audit())
    digest, _ = push_image(client, "app", "v2")
    assert seen == [("app", "v2")]
    assert client.get("/v2/app/manifests/v2").headers["Docker-Content-Digest"] == digest


# -- cargohold_error_response ----------------------------------------------------


def test_error_response_plugin_wins_over_builtin(client, state):
    class TextErrors:
        @hookimpl
        def cargohold_error_response(self, error, request):
            return Response(f"{error.code} on {request.path}", status=error.status, content_type="text/plain")

    state.pm.register(TextErrors())
    resp = client.get("/v2/app/manifests/nope")
    assert resp.status_code == 404
    assert resp.content_type.startswith("text/plain")
    assert resp.data == b"MANIFEST_UNKNOWN on /v2/app/manifests/nope"


def test_error_response_plugin_returning_none_falls_back_to_builtin(client, state):
    calls = []

    class Passive:
        @hookimpl
        def cargohold_error_response(self, error):
            calls.append(error.code)

    state.pm.register(Passive())
    resp = client.get("/v2/app/manifests/nope")
    assert calls == ["MANIFEST_UNKNOWN"]
    assert resp.status_code == 404 and error_code(resp) == "MANIFEST_UNKNOWN"


# -- cargohold_report_exception --------------------------------------------------


class Explodes:
    @hookimpl
    def cargohold_before_manifest_put(self):
        raise RuntimeError("kaboom at /srv/internal/secret-path")


class Reporter:
    def __init__(self):
        self.reports = []

    @hookimpl
    def cargohold_report_exception(self, error, request_info):
        self.reports.append((error, request_info))


class BrokenReporter:
    def __init__(self):
        self.calls = 0

    @hookimpl
    def cargohold_report_exception(self, error):
        self.calls += 1
        raise ValueError("the reporting service is down")


def test_unhandled_error_is_reported_without_credentials(client, state):
    first, broken, last = Reporter(), BrokenReporter(), Reporter()
    for plugin in (Explodes(), first, broken, last):
        state.pm.register(plugin)
    raw = image_manifest(client, "app")

    resp = put_manifest(client, "app", "v1", raw, headers={
        "Authorization": "Basic dXNlcjpodW50ZXIy",
        "Cookie": "session=s3cr3t-cookie",
        "Proxy-Authorization": "Bearer proxy-token",
        "X-Trace": "trace-123",
    })

    # A broken policy fails closed (503), reported like any unexpected error.
    assert resp.status_code == 503
    [error] = resp.get_json()["errors"]
    assert error["code"] == "UNAVAILABLE" and error["message"] == "a policy check failed; try again later"
    assert error["detail"]["hook"] == "cargohold_before_manifest_put"
    assert b"kaboom" not in resp.data and b"Traceback" not in resp.data and b"secret" not in resp.data
    # The raising reporter neither broke the response nor silenced the others.
    assert broken.calls == 1
    for reporter in (first, last):
        [(error, info)] = reporter.reports
        assert isinstance(error, RuntimeError) and "kaboom" in str(error)
        assert info["method"] == "PUT" and info["path"] == "/v2/app/manifests/v1"
        headers = {k.lower(): v for k, v in info["headers"].items()}
        assert headers["x-trace"] == "trace-123"
        assert not {"authorization", "cookie", "proxy-authorization"} & set(headers)
        dumped = json.dumps(info, default=str)
        assert "dXNlcjpodW50ZXIy" not in dumped and "s3cr3t-cookie" not in dumped and "proxy-token" not in dumped
    assert client.get("/v2/app/tags/list").get_json()["tags"] == []


def test_registry_errors_are_not_reported_as_exceptions(client, state):
    reporter = Reporter()
    state.pm.register(reporter)
    assert client.get("/v2/app/manifests/nope").status_code == 404
    assert client.get("/v2/Bad/tags/list").status_code == 400
    assert reporter.reports == []


# -- cargohold_request_finished --------------------------------------------------


def test_request_finished_gets_status_and_duration(client, state):
    finished = []

    class Metrics:
        @hookimpl
        def cargohold_request_finished(self, request_info, status, duration):
            finished.append((request_info["method"], request_info["path"], status, duration))

    class BrokenMetrics:
        @hookimpl
        def cargohold_request_finished(self, status):
            raise RuntimeError("statsd unreachable")

    state.pm.register(Metrics())
    state.pm.register(BrokenMetrics())
    raw = image_manifest(client, "app")
    finished.clear()

    assert client.get("/v2/").status_code == 200
    assert client.post("/v2/app/blobs/uploads/").status_code == 202
    assert client.get("/v2/app/manifests/nope").status_code == 404
    assert put_manifest(client, "app", "v1", raw).status_code == 201
    assert client.delete("/v2/app/manifests/v1").status_code == 202

    assert [(m, s) for m, _, s, _ in finished] == [
        ("GET", 200), ("POST", 202), ("GET", 404), ("PUT", 201), ("DELETE", 202),
    ]
    assert finished[2][1] == "/v2/app/manifests/nope"
    assert all(isinstance(d, float) and 0 <= d < 10 for *_, d in finished)


# -- cargohold_registry_event ----------------------------------------------------


class NamedUser(AuthProvider):
    def authorize(self, request, access):
        return Grant(user="alice")


class NamedUserAuth:
    name = "named-user-auth"

    @hookimpl
    def cargohold_auth_providers(self):
        return {"named": lambda params: NamedUser()}


@pytest.fixture
def evented(make_app):
    log = EventLog()
    app = make_app({**BASE_CONFIG, "auth": {"named": {}}}, plugins=[NamedUserAuth(), log])
    return app.test_client(), log.events


def test_events_for_push_pull_and_delete(evented):
    client, events = evented
    layer = b"layer-bytes"
    digest, raw = push_image(client, "team/app", "v1", layer=layer)
    layer_digest = digest_of(layer)

    pushes = [e for e in events if e.action == "push"]
    blob_push = next(e for e in pushes if e.target["digest"] == layer_digest)
    assert blob_push.target["repository"] == "team/app"
    assert blob_push.target["size"] == len(layer)
    assert blob_push.request["method"] == "POST"
    [manifest_push] = [e for e in pushes if e.target["digest"] == digest]
    assert manifest_push.target["mediaType"] == OCI_MANIFEST
    assert manifest_push.target["size"] == len(raw)
    assert manifest_push.target["tag"] == "v1"
    assert manifest_push.target["url"].endswith(f"/v2/team/app/manifests/{digest}")
    assert manifest_push.request["method"] == "PUT"
    assert manifest_push.actor == {"name": "alice"}
    assert isinstance(manifest_push.source["instanceID"], str) and manifest_push.source["instanceID"]
    doc = manifest_push.to_dict()
    assert set(doc) >= {"id", "timestamp", "action", "target", "request", "actor", "source"}
    assert doc["timestamp"].endswith("Z")

    events.clear()
    assert client.get("/v2/team/app/manifests/v1").status_code == 200
    assert client.get(f"/v2/team/app/blobs/{layer_digest}").data == layer
    [manifest_pull, blob_pull] = events
    assert (manifest_pull.action, manifest_pull.target["digest"], manifest_pull.target["tag"]) == ("pull", digest, "v1")
    assert manifest_pull.request["method"] == "GET"
    assert (blob_pull.action, blob_pull.target["digest"]) == ("pull", layer_digest)
    assert blob_pull.target["size"] == len(layer)

    events.clear()
    assert client.delete(f"/v2/team/app/manifests/{digest}").status_code == 202
    [deleted] = events
    assert deleted.action == "delete"
    assert deleted.target["digest"] == digest and deleted.target["repository"] == "team/app"
    assert deleted.request["method"] == "DELETE" and deleted.actor == {"name": "alice"}


def test_index_push_event_points_at_the_manifest_url(evented):
    client, events = evented
    child, child_raw = push_image(client, "app", None)
    index = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child, "size": len(child_raw)}],
    }).encode()
    events.clear()
    assert put_manifest(client, "app", "multi", index, OCI_INDEX).status_code == 201
    [event] = events
    assert event.target["mediaType"] == OCI_INDEX
    assert event.target["url"].endswith(f"/v2/app/manifests/{digest_of(index)}")


def test_failing_event_listener_does_not_fail_the_request(client, state):
    log = EventLog()

    class BrokenSink:
        @hookimpl
        def cargohold_registry_event(self, event):
            raise RuntimeError("queue full")

    state.pm.register(log)
    state.pm.register(BrokenSink())
    push_blob(client, "app", b"data")
    assert [e.action for e in log.events] == ["push"]


# -- registration-time hooks -------------------------------------------------------


def _driver_plugin(plugin_name: str, driver_name: str, factory=None):
    class Offers:
        name = plugin_name

        @hookimpl
        def cargohold_storage_drivers(self):
            return {driver_name: factory or (lambda params: InMemoryDriver())}

    return Offers()


def test_duplicate_storage_driver_names_fail_startup(make_app):
    with pytest.raises(StartupError) as info:
        make_app(plugins=[_driver_plugin("first-plugin", "shared"), _driver_plugin("second-plugin", "shared")])
    message = str(info.value)
    assert "'shared'" in message and "first-plugin" in message and "second-plugin" in message


def test_a_plugin_cannot_take_over_a_builtin_driver_name(make_app):
    with pytest.raises(StartupError) as info:
        make_app(plugins=[_driver_plugin("impostor", "inmemory")])
    assert "impostor" in str(info.value) and "cargohold.builtin.storage" in str(info.value)


def test_unknown_storage_driver_is_named(make_app):
    with pytest.raises(StartupError) as info:
        make_app({"storage": {"nosuchdriver": {}}})
    assert "nosuchdriver" in str(info.value) and "inmemory" in str(info.value)


def test_unknown_auth_provider_is_named(make_app):
    with pytest.raises(StartupError) as info:
        make_app({**BASE_CONFIG, "auth": {"ldapish": {}}})
    assert "ldapish" in str(info.value)


def test_driver_factory_value_error_becomes_config_error(make_app):
    def factory(params):
        raise ValueError(f"unknown key 'bogus' ({sorted(params)})")

    with pytest.raises(ConfigError) as info:
        make_app({"storage": {"picky": {"bogus": 1}}}, plugins=[_driver_plugin("picky-plugin", "picky", factory)])
    assert "storage.picky" in str(info.value) and "bogus" in str(info.value)


def test_driver_factory_receives_its_section(make_app):
    received = []

    def factory(params):
        received.append(params)
        return InMemoryDriver()

    plugin = _driver_plugin("custom-plugin", "custom", factory)
    app = make_app({"storage": {"custom": {"bucket": "b1"}}}, plugins=[plugin])
    assert received == [{"bucket": "b1"}]
    assert app.extensions["cargohold"].storage_name == "custom"
    assert push_blob(app.test_client(), "app", b"x") == digest_of(b"x")


def test_disabled_plugin_is_not_registered(make_app):
    policy = DenyPushes()
    config = {**BASE_CONFIG, "plugins": {"disabled": [DenyPushes.name]}}
    app = make_app(config, plugins=[policy])
    client = app.test_client()
    push_image(client, "app", "v1")
    assert policy.seen == []
    assert DenyPushes.name not in [p["name"] for p in describe_plugins(app.extensions["cargohold"].pm)]

    enabled = make_app(plugins=[DenyPushes()]).test_client()
    raw = image_manifest(enabled, "app")
    assert put_manifest(enabled, "app", "v1", raw).status_code == 403


def test_disabling_a_builtin_removes_what_it_offers(make_app):
    with pytest.raises(StartupError) as info:
        make_app({**BASE_CONFIG, "plugins": {"disabled": ["cargohold.builtin.storage"]}})
    assert "inmemory" in str(info.value)


def test_blueprints_hook_adds_routes(make_app):
    seen = []

    class Extra:
        @hookimpl
        def cargohold_blueprints(self, app):
            seen.append(app)
            bp = Blueprint("extra", __name__)

            @bp.route("/token")
            def token():
                return {"token": "t"}

            return [bp]

    app = make_app(plugins=[Extra()])
    assert seen == [app]
    resp = app.test_client().get("/token")
    assert resp.status_code == 200 and resp.get_json() == {"token": "t"}
    assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def _wrapper(label: str, calls: list):
    class Wraps:
        name = label

        @hookimpl
        def cargohold_wrap_wsgi(self, wsgi_app):
            def wrapped(environ, start_response):
                calls.append(label)
                return wsgi_app(environ, start_response)

            return wrapped

    return Wraps()


def test_every_wsgi_wrapper_is_applied(make_app):
    calls = []
    app = make_app(plugins=[_wrapper("outer", calls), _wrapper("inner", calls)])
    assert app.test_client().get("/v2/").status_code == 200
    assert sorted(calls) == ["inner", "outer"]


def test_startup_failure_names_the_plugin(make_app):
    class Boom:
        name = "boom-plugin"

        @hookimpl
        def cargohold_startup(self, app):
            raise RuntimeError("cannot reach license server")

    with pytest.raises(StartupError) as info:
        make_app(plugins=[Boom()])
    assert "cannot reach license server" in str(info.value)
    assert "boom-plugin" in str(info.value)


def test_shutdown_hooks_run_in_isolation(make_app):
    ran = []

    class Fails:
        @hookimpl
        def cargohold_shutdown(self, app):
            ran.append("fails")
            raise RuntimeError("flush failed")

    class Works:
        @hookimpl
        def cargohold_shutdown(self, app):
            ran.append("works")

    app = make_app(plugins=[Works(), Fails()])
    app.cargohold_shutdown()
    assert sorted(ran) == ["fails", "works"]


def test_configured_sections_without_a_plugin_are_warned_about(make_app, caplog):
    # (notifications.endpoints naming a sink nobody offers is an error:
    # tests/api/test_notifications.py)
    with caplog.at_level("WARNING", logger="cargohold"):
        # A reporter no installed plugin serves (the New Relic and Bugsnag
        # plugins would start their agents here).
        make_app({**BASE_CONFIG, "reporting": {"airbrake": {"projectkey": "k"}}})
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "reporting.airbrake is set" in messages


# -- every hook call goes through pluggy ---------------------------------------


class WrapsEverything:
    """``wrapper=True`` on the start-up, request and event hooks: pluggy runs
    wrappers only for calls that go through ``pm.hook``."""

    name = "wraps-everything"

    def __init__(self):
        self.seen = []

    def _wrap(self, hook):
        self.seen.append(hook)
        return (yield)

    @hookimpl(wrapper=True)
    def cargohold_startup(self, app):
        return (yield from self._wrap("cargohold_startup"))

    @hookimpl(wrapper=True)
    def cargohold_blueprints(self, app):
        return (yield from self._wrap("cargohold_blueprints"))

    @hookimpl(wrapper=True)
    def cargohold_wrap_wsgi(self, wsgi_app):
        return (yield from self._wrap("cargohold_wrap_wsgi"))

    @hookimpl(wrapper=True)
    def cargohold_storage_drivers(self):
        return (yield from self._wrap("cargohold_storage_drivers"))

    @hookimpl(wrapper=True)
    def cargohold_registry_event(self, event):
        return (yield from self._wrap("cargohold_registry_event"))

    @hookimpl(wrapper=True)
    def cargohold_request_finished(self, status):
        return (yield from self._wrap("cargohold_request_finished"))

    @hookimpl(wrapper=True)
    def cargohold_shutdown(self, app):
        return (yield from self._wrap("cargohold_shutdown"))


def test_wrapper_implementations_run_for_every_kind_of_hook(make_app):
    wrapper = WrapsEverything()
    app = make_app(plugins=[wrapper, EventLog(), Reporter()])
    assert {"cargohold_startup", "cargohold_blueprints", "cargohold_wrap_wsgi",
            "cargohold_storage_drivers"} <= set(wrapper.seen)
    push_blob(app.test_client(), "app/web", b"wrapped")
    assert "cargohold_registry_event" in wrapper.seen
    assert "cargohold_request_finished" in wrapper.seen
    app.cargohold_shutdown()
    assert wrapper.seen[-1] == "cargohold_shutdown"


def test_tracing_shows_every_hook_call(make_app, monkeypatch, capfd):
    monkeypatch.setenv("CARGOHOLD_TRACE", "1")
    app = make_app(plugins=[EventLog(), Reporter(), Explodes(), WrapsEverything()])
    client = app.test_client()
    push_blob(client, "app/web", b"traced")
    client.get("/v2/app/web/manifests/missing")
    raw = image_manifest(client, "app/web")
    assert put_manifest(client, "app/web", "v1", raw).status_code == 503  # Explodes: a broken policy, reported
    app.cargohold_shutdown()
    traced = capfd.readouterr().err
    for hook in ("cargohold_config_schema", "cargohold_storage_drivers", "cargohold_auth_providers",
                 "cargohold_blueprints", "cargohold_wrap_wsgi", "cargohold_startup",
                 "cargohold_registry_event", "cargohold_request_finished", "cargohold_error_response",
                 "cargohold_report_exception", "cargohold_shutdown"):
        assert f"{hook} [hook]" in traced, hook
