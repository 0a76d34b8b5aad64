"""Authorization: what the core asks the provider, and failing closed."""

from __future__ import annotations

import pytest

from cargohold import hookimpl
from cargohold.auth import Access, AuthProvider, Challenge, Forbidden, Grant

from .conftest import BASE_CONFIG
from .helpers import digest_of, error_code, image_manifest, push_blob, put_manifest

BLOB = digest_of(b"blob")


class Provider(AuthProvider):
    """Records every ``access`` list and answers with ``decide(request, access)``."""

    def __init__(self, decide):
        self.decide = decide
        self.calls: list[list[Access]] = []

    def authorize(self, request, access):
        self.calls.append(list(access))
        return self.decide(request, access)


def allow(request, access):
    return Grant(user="tester")


@pytest.fixture
def auth_app(make_app):
    """``auth_app(decide)`` -> (client, provider) with the provider selected by
    config under the name ``test``."""

    def make(decide):
        provider = Provider(decide)

        class Offers:
            name = "test-auth"

            @hookimpl
            def cargohold_auth_providers(self):
                return {"test": lambda params: provider}

        app = make_app({**BASE_CONFIG, "auth": {"test": {}}}, plugins=[Offers()])
        assert app.extensions["cargohold"].auth_name == "test"
        return app.test_client(), provider

    return make


def _raise(exc):
    def decide(request, access):
        raise exc

    return decide


@pytest.mark.parametrize("decide", [
    pytest.param(lambda r, a: None, id="returns-none"),
    pytest.param(lambda r, a: True, id="returns-true"),
    pytest.param(lambda r, a: {"user": "x"}, id="returns-dict"),
    pytest.param(_raise(RuntimeError("ldap down")), id="raises-runtimeerror"),
    pytest.param(_raise(KeyError("user")), id="raises-keyerror"),
    pytest.param(_raise(Forbidden()), id="raises-forbidden"),
])
def test_anything_but_a_grant_denies(auth_app, decide):
    client, provider = auth_app(decide)
    for method, path in [("GET", "/v2/"), ("GET", f"/v2/app/blobs/{BLOB}"), ("POST", "/v2/app/blobs/uploads/"),
                         ("GET", "/v2/_catalog"), ("DELETE", "/v2/app/manifests/v1")]:
        resp = client.open(path, method=method)
        assert resp.status_code == 403, (method, path)
        assert error_code(resp) == "DENIED"
        assert b"ldap down" not in resp.data
    assert len(provider.calls) == 5


def test_denied_push_stores_nothing(auth_app):
    def decide(request, access):
        if any("push" in a.actions for a in access):
            return None
        return Grant()

    client, _ = auth_app(decide)
    data = b"payload"
    resp = client.post(f"/v2/app/blobs/uploads/?digest={digest_of(data)}", data=data)
    assert resp.status_code == 403 and error_code(resp) == "DENIED"
    assert client.head(f"/v2/app/blobs/{digest_of(data)}").status_code == 404
    assert client.get("/v2/_catalog").get_json() == {"repositories": []}


def test_challenge_answers_401_with_header(auth_app):
    def decide(request, access):
        if request.headers.get("Authorization") != "Basic dTpw":
            raise Challenge('Basic realm="x"')
        return Grant(user="u")

    client, _ = auth_app(decide)
    for method in ("GET", "HEAD"):
        resp = client.open("/v2/", method=method)
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="x"'
    resp = client.get(f"/v2/app/blobs/{BLOB}")
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == 'Basic realm="x"'
    assert error_code(resp) == "UNAUTHORIZED"
    assert client.get("/v2/", headers={"Authorization": "Basic dTpw"}).status_code == 200


def repo(name, *actions):
    return Access("repository", name, tuple(actions))


MOUNT = f"/v2/team/app/blobs/uploads/?mount={BLOB}&from=other/src"


@pytest.mark.parametrize("method,path,expected", [
    ("GET", "/v2/", []),
    ("HEAD", "/v2/", []),
    ("GET", f"/v2/team/app/blobs/{BLOB}", [repo("team/app", "pull")]),
    ("HEAD", f"/v2/team/app/blobs/{BLOB}", [repo("team/app", "pull")]),
    ("GET", "/v2/team/app/manifests/v1", [repo("team/app", "pull")]),
    ("GET", "/v2/team/app/tags/list", [repo("team/app", "pull")]),
    ("GET", f"/v2/team/app/referrers/{BLOB}", [repo("team/app", "pull")]),
    ("PUT", "/v2/team/app/manifests/v1", [repo("team/app", "pull", "push")]),
    ("POST", "/v2/team/app/blobs/uploads/", [repo("team/app", "pull", "push")]),
    ("PATCH", "/v2/team/app/blobs/uploads/0d0a7a43-5e8c-4a4e-9e1c-6a6e1d1b7c5e", [repo("team/app", "pull", "push")]),
    ("DELETE", "/v2/team/app/manifests/v1", [repo("team/app", "delete")]),
    ("DELETE", f"/v2/team/app/blobs/{BLOB}", [repo("team/app", "delete")]),
    ("POST", MOUNT, [repo("team/app", "pull", "push"), repo("other/src", "pull")]),
    ("POST", f"/v2/team/app/blobs/uploads/?mount={BLOB}&from=team/app", [repo("team/app", "pull", "push")]),
    ("GET", "/v2/_catalog", [Access("registry", "catalog", ("*",))]),
])
def test_access_requested_per_endpoint(auth_app, method, path, expected):
    client, provider = auth_app(allow)
    client.open(path, method=method)
    assert provider.calls == [expected]


def test_access_scopes_use_token_grammar():
    assert repo("team/app", "pull", "push").scope() == "repository:team/app:pull,push"
    assert Access("registry", "catalog", ("*",)).scope() == "registry:catalog:*"


def test_mount_needs_pull_on_the_source(auth_app):
    def decide(request, access):
        if any(a.name == "secret/repo" for a in access) and request.headers.get("X-User") != "admin":
            raise Forbidden()
        return Grant()

    client, _ = auth_app(decide)
    digest = digest_of(b"classified")
    client_headers = {"X-User": "admin"}
    assert client.post(f"/v2/secret/repo/blobs/uploads/?digest={digest}", data=b"classified",
                       headers=client_headers).status_code == 201
    assert client.head(f"/v2/secret/repo/blobs/{digest}").status_code == 403

    resp = client.post(f"/v2/mine/blobs/uploads/?mount={digest}&from=secret/repo")
    assert resp.status_code == 403 and error_code(resp) == "DENIED"
    assert client.head(f"/v2/mine/blobs/{digest}").status_code == 404

    resp = client.post(f"/v2/mine/blobs/uploads/?mount={digest}&from=secret/repo", headers=client_headers)
    assert resp.status_code == 201
    assert client.get(f"/v2/mine/blobs/{digest}").data == b"classified"


def test_catalog_is_filtered_by_grant(auth_app):
    client, _ = auth_app(lambda r, a: Grant(user="u", allowed=lambda name: name.startswith("pub/")))
    for name in ("pub/a", "priv/b", "pub/c", "public"):
        push_blob(client, name, name.encode())
    assert client.get("/v2/_catalog").get_json() == {"repositories": ["pub/a", "pub/c"]}
    resp = client.get("/v2/_catalog?n=1")
    assert resp.get_json() == {"repositories": ["pub/a"]}
    assert "last=pub%2Fa" in resp.headers["Link"]


def test_name_is_validated_before_the_provider_is_asked(auth_app):
    client, provider = auth_app(allow)
    resp = client.get("/v2/Bad_Name/tags/list")
    assert resp.status_code == 400 and error_code(resp) == "NAME_INVALID"
    resp = client.post(f"/v2/app/blobs/uploads/?mount={BLOB}&from=../etc")
    assert resp.status_code == 400 and error_code(resp) == "NAME_INVALID"
    assert provider.calls == []


def test_denied_manifest_put_with_valid_body(auth_app):
    def decide(request, access):
        if request.method == "PUT":
            raise Forbidden("read-only mirror")
        return Grant()

    client, _ = auth_app(decide)
    raw = image_manifest(client, "app")
    resp = put_manifest(client, "app", "v1", raw)
    assert resp.status_code == 403
    assert resp.get_json()["errors"][0] == {"code": "DENIED", "message": "read-only mirror", "detail": None}
    assert client.get("/v2/app/manifests/v1").status_code == 404
