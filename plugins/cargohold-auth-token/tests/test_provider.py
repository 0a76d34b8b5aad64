"""The token provider inside the registry (Flask test client): challenges,
scopes, insufficient scope, the catalog, configuration errors."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold_auth_token.testing import REALM, SERVICE, bearer

BLOB = b"token-protected layer"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def challenge(resp) -> dict:
    """The parameters of a Bearer challenge."""
    value = resp.headers["WWW-Authenticate"]
    assert value.startswith("Bearer "), value
    return dict(re.findall(r'(\w+)="([^"]*)"', value))


def error(resp) -> dict:
    body = resp.get_json()
    assert len(body["errors"]) == 1, body
    return body["errors"][0]


def push(client, name, token, data=BLOB):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data, headers=bearer(token),
                       content_type="application/octet-stream")


@pytest.mark.parametrize("method,path,scope", [
    ("GET", "/v2/", None),
    ("GET", f"/v2/team/app/blobs/{DIGEST}", "repository:team/app:pull"),
    ("HEAD", "/v2/team/app/manifests/v1", "repository:team/app:pull"),
    ("POST", "/v2/team/app/blobs/uploads/", "repository:team/app:pull,push"),
    ("PUT", "/v2/team/app/manifests/v1", "repository:team/app:pull,push"),
    ("DELETE", "/v2/team/app/manifests/v1", "repository:team/app:delete"),
    ("GET", "/v2/_catalog", "registry:catalog:*"),
    ("POST", f"/v2/team/app/blobs/uploads/?mount={DIGEST}&from=other/src",
     "repository:team/app:pull,push repository:other/src:pull"),
])
def test_no_token_gets_a_bearer_challenge(registry, method, path, scope):
    resp = registry.open(path, method=method)
    assert resp.status_code == 401
    expected = {"realm": REALM, "service": SERVICE}
    if scope:
        expected["scope"] = scope
    assert challenge(resp) == expected
    if method != "HEAD":
        assert error(resp)["code"] == "UNAUTHORIZED"


def test_basic_credentials_are_not_a_token(registry):
    resp = registry.get("/v2/", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert resp.status_code == 401 and "error" not in challenge(resp)


def test_valid_token_allows_what_it_names(registry, signers):
    for signer in signers.values():
        name = f"team/{signer.algorithm.lower()}"
        token = signer.token([("repository", name, ["pull", "push"])])
        assert registry.get("/v2/", headers=bearer(token)).status_code == 200
        assert push(registry, name, token).status_code == 201
        resp = registry.get(f"/v2/{name}/blobs/{DIGEST}", headers=bearer(token))
        assert resp.status_code == 200 and resp.data == BLOB


def test_token_for_another_repository_is_insufficient(registry, signer):
    token = signer.token([("repository", "team/other", ["pull", "push"])])
    resp = registry.get(f"/v2/team/app/blobs/{DIGEST}", headers=bearer(token))
    assert resp.status_code == 401
    assert challenge(resp) == {"realm": REALM, "service": SERVICE, "scope": "repository:team/app:pull",
                               "error": "insufficient_scope"}
    assert error(resp)["code"] == "UNAUTHORIZED"
    assert error(resp)["detail"] == [{"Type": "repository", "Name": "team/app", "Action": "pull"}]


def test_pull_only_token_cannot_push(registry, signer):
    writer = signer.token([("repository", "team/app", ["pull", "push"])])
    assert push(registry, "team/app", writer).status_code == 201
    reader = signer.token([("repository", "team/app", ["pull"])])
    resp = push(registry, "team/app", reader, data=b"other")
    assert resp.status_code == 401
    assert challenge(resp)["error"] == "insufficient_scope"
    assert challenge(resp)["scope"] == "repository:team/app:pull,push"
    assert registry.head(f"/v2/team/app/blobs/sha256:{hashlib.sha256(b'other').hexdigest()}",
                         headers=bearer(writer)).status_code == 404
    assert registry.get(f"/v2/team/app/blobs/{DIGEST}", headers=bearer(reader)).status_code == 200


def test_mount_needs_pull_on_the_source(registry, signer):
    assert push(registry, "secret/src", signer.token([("repository", "secret/src", ["push", "pull"])])).status_code == 201
    target_only = signer.token([("repository", "mine/app", ["pull", "push"])])
    resp = registry.post(f"/v2/mine/app/blobs/uploads/?mount={DIGEST}&from=secret/src", headers=bearer(target_only))
    assert resp.status_code == 401 and challenge(resp)["error"] == "insufficient_scope"
    both = signer.token([("repository", "mine/app", ["pull", "push"]), ("repository", "secret/src", ["pull"])])
    resp = registry.post(f"/v2/mine/app/blobs/uploads/?mount={DIGEST}&from=secret/src", headers=bearer(both))
    assert resp.status_code == 201


def test_delete_needs_delete(registry, signer):
    assert push(registry, "team/app", signer.token([("repository", "team/app", ["push", "pull"])])).status_code == 201
    resp = registry.delete(f"/v2/team/app/blobs/{DIGEST}",
                           headers=bearer(signer.token([("repository", "team/app", ["pull", "push"])])))
    assert resp.status_code == 401 and challenge(resp)["scope"] == "repository:team/app:delete"
    resp = registry.delete(f"/v2/team/app/blobs/{DIGEST}",
                           headers=bearer(signer.token([("repository", "team/app", ["*"])])))
    assert resp.status_code == 202


def test_invalid_token_says_invalid_token(registry, signer, stranger):
    for token in (stranger.token([("repository", "team/app", ["pull"])]),
                  signer.token([("repository", "team/app", ["pull"])], exp=int(time.time()) - 600),
                  "garbage"):
        resp = registry.get("/v2/team/app/tags/list", headers=bearer(token))
        assert resp.status_code == 401
        assert challenge(resp) == {"realm": REALM, "service": SERVICE, "scope": "repository:team/app:pull",
                                   "error": "invalid_token"}
        assert error(resp)["code"] == "UNAUTHORIZED" and error(resp)["message"].startswith("invalid token: ")


def test_catalog_lists_only_repositories_the_token_may_pull(registry, signer):
    writer = signer.token([("repository", n, ["push", "pull"]) for n in ("a/one", "b/two", "c/three")])
    for name in ("a/one", "b/two", "c/three"):
        assert push(registry, name, writer).status_code == 201
    no_catalog = signer.token([("repository", "a/one", ["pull"])])
    resp = registry.get("/v2/_catalog", headers=bearer(no_catalog))
    assert resp.status_code == 401 and challenge(resp)["scope"] == "registry:catalog:*"
    token = signer.token([("registry", "catalog", ["*"]), ("repository", "a/one", ["pull"]),
                          ("repository", "c/three", ["*"]), ("repository", "b/two", ["push"])])
    resp = registry.get("/v2/_catalog", headers=bearer(token))
    assert resp.status_code == 200 and resp.get_json() == {"repositories": ["a/one", "c/three"]}


def test_autoredirect_realm_points_at_this_registry(make_app, bundle):
    config = {"storage": {"inmemory": {}}, "auth": {"token": {
        "service": SERVICE, "issuer": "i", "rootcertbundle": str(bundle), "autoredirect": True}}}
    client = make_app(config).test_client()
    resp = client.get("/v2/", base_url="http://registry.local:5000")
    assert challenge(resp)["realm"] == "http://registry.local:5000/auth/token"



def _realm(make_app, bundle, headers=None, **http) -> str:
    config = {"storage": {"inmemory": {}}, "http": http, "auth": {"token": {
        "service": SERVICE, "issuer": "i", "rootcertbundle": str(bundle), "autoredirect": True}}}
    client = make_app(config).test_client()
    prefix = http.get("prefix", "")
    return challenge(client.get(f"{prefix}/v2/", base_url="http://registry.local:5000", headers=headers))["realm"]


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


def test_autoredirect_ignores_forwarded_headers_from_untrusted_clients(make_app, bundle):
    # Any client can send X-Forwarded-*: without http.trustedproxies they
    # must not pick the realm the registry sends clients to with credentials.
    assert _realm(make_app, bundle, FORWARDED) == "http://registry.local:5000/auth/token"


def test_autoredirect_follows_a_trusted_proxy(make_app, bundle):
    assert _realm(make_app, bundle, FORWARDED, trustedproxies=1) == "https://evil.example/auth/token"


def test_autoredirect_uses_http_host_and_prefix(make_app, bundle):
    assert _realm(make_app, bundle, FORWARDED, prefix="/registry") == "http://registry.local:5000/registry/auth/token"
    assert _realm(make_app, bundle, FORWARDED, host="https://registry.example.com", prefix="/registry") == \
        "https://registry.example.com/registry/auth/token"


@pytest.mark.parametrize("auth,message", [
    ({"service": SERVICE, "issuer": "i", "rootcertbundle": "BUNDLE"}, "auth.token: 'realm' is required"),
    ({"realm": REALM, "issuer": "i", "rootcertbundle": "BUNDLE"}, "auth.token: 'service' is required"),
    ({"realm": REALM, "service": SERVICE, "rootcertbundle": "BUNDLE"}, "auth.token: 'issuer' is required"),
    ({"realm": REALM, "service": SERVICE, "issuer": "i"}, "auth.token: 'rootcertbundle' or 'jwks' is required"),
    ({"realm": REALM, "service": SERVICE, "issuer": "i", "rootcertbundle": "/nonexistent.crt"},
     "auth.token: rootcertbundle: cannot read /nonexistent.crt"),
    ({"realm": REALM, "service": SERVICE, "issuer": "i", "rootcertbundle": "BUNDLE",
      "signingalgorithms": ["none"]}, "auth.token: signingalgorithms: unsupported signing algorithm"),
    ({"realm": REALM, "service": SERVICE, "issuer": "i", "rootcertbundle": "BUNDLE", "relm": "x"},
     "unknown key 'auth.token.relm' (did you mean 'auth.token.realm'?)"),
])
def test_configuration_errors_name_the_key(bundle, auth, message):
    auth = {k: (str(bundle) if v == "BUNDLE" else v) for k, v in auth.items()}
    with pytest.raises(ConfigError) as e:
        create_app(config={"storage": {"inmemory": {}}, "auth": {"token": auth}}, environ={})
    assert message in str(e.value)


def test_environment_overrides_every_key(bundle):
    environ = {"CARGOHOLD_AUTH": "token", "CARGOHOLD_AUTH_TOKEN_REALM": "https://env.example/token",
               "CARGOHOLD_AUTH_TOKEN_SERVICE": "env-service", "CARGOHOLD_AUTH_TOKEN_ISSUER": "env-issuer",
               "CARGOHOLD_AUTH_TOKEN_ROOTCERTBUNDLE": str(bundle), "CARGOHOLD_AUTH_TOKEN_LEEWAY": "5s",
               "CARGOHOLD_STORAGE": "inmemory"}
    app = create_app(environ=environ)
    state = app.extensions["cargohold"]
    assert state.auth_name == "token" and state.auth.verifier.leeway == 5.0
    assert challenge(app.test_client().get("/v2/")) == {"realm": "https://env.example/token", "service": "env-service"}
    app.cargohold_shutdown()


def test_empty_leeway_means_the_default(make_app, bundle):
    config = {"storage": {"inmemory": {}}, "auth": {"token": {
        "realm": REALM, "service": SERVICE, "issuer": "i", "rootcertbundle": str(bundle), "leeway": None}}}
    assert make_app(config).extensions["cargohold"].auth.verifier.leeway == 60


def test_challenge_body_is_the_spec_error_json(registry):
    resp = registry.get("/v2/team/app/tags/list")
    assert resp.headers["Content-Type"].startswith("application/json")
    assert json.loads(resp.data)["errors"][0]["code"] == "UNAUTHORIZED"
