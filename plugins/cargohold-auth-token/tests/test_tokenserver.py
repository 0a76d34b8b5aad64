"""The built-in token server through the Flask test client: the GET flow
with and without Basic credentials, the OAuth2 POST flow, refresh tokens,
bad requests, and tokens it issues used on the registry."""

from __future__ import annotations

import io
import base64
import hashlib
import json
import time

import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.plugins import StartupError
from cargohold_auth_token.testing import ISSUER, SERVICE, basic, bearer, unverified_claims

BLOB = b"layer pushed with an issued token"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


def get_token(client, *scopes, headers=None, **params):
    query = [("service", SERVICE), *(("scope", s) for s in scopes), *params.items()]
    return client.get("/auth/token", query_string=query, headers=headers or {})


def granted(resp) -> list[dict]:
    assert resp.status_code == 200, resp.data
    body = resp.get_json()
    assert body["token"] == body["access_token"]
    return unverified_claims(body["token"])["access"]


def test_anonymous_gets_only_anonymous_grants(served):
    resp = get_token(served, "repository:public/app:pull,push", "repository:private/app:pull")
    assert granted(resp) == [{"type": "repository", "name": "public/app", "actions": ["pull"]}]
    body = resp.get_json()
    claims = unverified_claims(body["token"])
    assert claims["sub"] == "" and claims["iss"] == ISSUER and claims["aud"] == SERVICE
    assert body["expires_in"] == 300 and claims["exp"] - claims["iat"] == 300
    assert body["issued_at"].endswith("Z") and "refresh_token" not in body
    assert resp.headers["Cache-Control"] == "no-store"


def test_user_gets_requested_intersect_rules(served, users):
    bob = basic("bob", users["bob"])
    resp = get_token(served, "repository:bob/app:pull,push,delete", "repository:alice/app:pull",
                     "repository:public/x:push,pull", "registry:catalog:*", headers=bob)
    assert granted(resp) == [
        {"type": "repository", "name": "bob/app", "actions": ["pull", "push"]},
        {"type": "repository", "name": "public/x", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert unverified_claims(resp.get_json()["token"])["sub"] == "bob"
    alice = basic("alice", users["alice"])
    assert granted(get_token(served, "repository:bob/app:pull,push,delete", headers=alice)) == [
        {"type": "repository", "name": "bob/app", "actions": ["pull", "push", "delete"]}]


def test_scope_types_without_rules_get_nothing(served, users):
    resp = get_token(served, "repository(plugin):vieux/sshfs:pull", "repository:public/app:pull",
                     headers=basic("bob", users["bob"]))
    assert granted(resp) == [{"type": "repository", "name": "public/app", "actions": ["pull"]}]


def test_login_without_scope_checks_credentials(served, users):
    assert granted(get_token(served, headers=basic("alice", users["alice"]))) == []
    for headers in (basic("alice", "wrong"), basic("mallory", "x"), {"Authorization": "Basic !!!"}):
        resp = get_token(served, headers=headers)
        assert resp.status_code == 401
        assert resp.get_json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert resp.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert "token" not in resp.get_json()


def test_offline_token_returns_a_refresh_token(served, users):
    resp = get_token(served, "repository:bob/app:pull", headers=basic("bob", users["bob"]), offline_token="true")
    refresh = resp.get_json()["refresh_token"]
    assert refresh.count(".") == 1  # opaque, never usable as a bearer token
    assert served.get("/v2/", headers=bearer(refresh)).status_code == 401
    # Anonymous callers have no subject to refresh for.
    assert "refresh_token" not in get_token(served, offline_token="true").get_json()


def test_oauth2_password_grant(served, users):
    resp = served.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": users["bob"],
                                            "service": SERVICE, "client_id": "containerd",
                                            "scope": "repository:bob/app:pull,push repository:alice/app:pull"})
    assert granted(resp) == [{"type": "repository", "name": "bob/app", "actions": ["pull", "push"]}]
    body = resp.get_json()
    assert body["scope"] == "repository:bob/app:pull,push" and body["refresh_token"]
    resp = served.post("/auth/token", data={"grant_type": "password", "username": "bob", "password": "nope",
                                            "service": SERVICE, "client_id": "containerd"})
    assert resp.status_code == 401 and "access_token" not in resp.get_json()


def test_oauth2_refresh_grant(served, users):
    login = served.post("/auth/token", data={"grant_type": "password", "username": "alice",
                                             "password": users["alice"], "service": SERVICE, "client_id": "t"})
    refresh = login.get_json()["refresh_token"]
    resp = served.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                            "service": SERVICE, "client_id": "t", "scope": "repository:x/y:push"})
    assert granted(resp) == [{"type": "repository", "name": "x/y", "actions": ["push"]}]
    assert unverified_claims(resp.get_json()["token"])["sub"] == "alice"
    assert resp.get_json()["refresh_token"] == refresh


def _resign_payload(token: str, **changes) -> str:
    """The refresh token with its payload changed and the old MAC kept."""
    payload, mac = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(changes)
    return base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode() + "." + mac


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "not issued by this server"),
    (lambda t: _resign_payload(t, sub="bob"), "not issued by this server"),
    (lambda t: "garbage", "malformed"),
    (lambda t: t + ".extra", "malformed"),
])
def test_forged_refresh_tokens_are_refused(served, users, mutate, message):
    login = get_token(served, headers=basic("alice", users["alice"]), offline_token="true")
    forged = mutate(login.get_json()["refresh_token"])
    resp = served.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": forged,
                                            "service": SERVICE, "client_id": "t"})
    assert resp.status_code == 401
    assert message in resp.get_json()["errors"][0]["message"]


def test_refresh_token_dies_with_its_user(make_app, token_server_config, tmp_path, htpasswd_file, users):
    users_file = tmp_path / "htpasswd"
    users_file.write_text(htpasswd_file.read_text())
    token_server_config["tokenserver"]["htpasswd"] = str(users_file)
    client = make_app(token_server_config).test_client()
    refresh = get_token(client, headers=basic("bob", users["bob"]), offline_token="true").get_json()["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "service": SERVICE, "client_id": "t"}
    assert client.post("/auth/token", data=form).status_code == 200
    users_file.write_text("".join(line + "\n" for line in htpasswd_file.read_text().splitlines()
                                  if not line.startswith("bob:")))
    resp = client.post("/auth/token", data=form)
    assert resp.status_code == 401 and "no longer exists" in resp.get_json()["errors"][0]["message"]


@pytest.mark.parametrize("kwargs,message", [
    ({"query_string": {"service": "other"}}, "not 'other'"),
    ({"query_string": {"service": SERVICE, "scope": "repository:app"}}, "invalid scope"),
    ({"query_string": {"service": SERVICE, "scope": "repository:app:PULL"}}, "invalid scope"),
    ({"query_string": {"service": SERVICE, "scope": "::"}}, "invalid scope"),
    ({"query_string": {"service": SERVICE, "scope": "repository(plugin:x:pull"}}, "invalid scope"),
    ({"method": "POST", "data": {"grant_type": "client_credentials", "service": SERVICE}}, "unsupported grant_type"),
    ({"method": "POST", "data": {"service": SERVICE}}, "unsupported grant_type"),
    ({"method": "POST", "data": {"grant_type": "password", "service": SERVICE}}, "needs 'username' and 'password'"),
    ({"method": "POST", "data": {"grant_type": "refresh_token", "service": SERVICE}}, "needs 'refresh_token'"),
])
def test_bad_requests_get_a_json_error(served, kwargs, message):
    resp = served.open("/auth/token", **kwargs)
    assert resp.status_code == 400
    err = resp.get_json()["errors"][0]
    assert err["code"] == "TOKEN_REQUEST_INVALID" and message in err["message"]


def test_issued_tokens_work_on_the_registry(served, users):
    bob = basic("bob", users["bob"])
    resp = served.post(f"/v2/bob/app/blobs/uploads/?digest={DIGEST}", data=BLOB)
    assert resp.status_code == 401
    scope = resp.headers["WWW-Authenticate"].split('scope="')[1].split('"')[0]
    token = get_token(served, scope, headers=bob).get_json()["token"]
    assert served.post(f"/v2/bob/app/blobs/uploads/?digest={DIGEST}", data=BLOB,
                       headers=bearer(token)).status_code == 201
    # Anonymous: no pull on bob/app (the token holds nothing)...
    anon = get_token(served, "repository:bob/app:pull").get_json()["token"]
    resp = served.get(f"/v2/bob/app/blobs/{DIGEST}", headers=bearer(anon))
    assert resp.status_code == 401 and 'error="insufficient_scope"' in resp.headers["WWW-Authenticate"]
    # ...and bob's token for bob/app does not reach alice/app.
    resp = served.get(f"/v2/alice/app/blobs/{DIGEST}", headers=bearer(token))
    assert resp.status_code == 401


def test_catalog_follows_the_rules(served, users):
    alice = basic("alice", users["alice"])
    for name in ("public/a", "bob/b", "zed/c"):
        token = get_token(served, f"repository:{name}:pull,push", headers=alice).get_json()["token"]
        assert served.post(f"/v2/{name}/blobs/uploads/?digest={DIGEST}", data=BLOB,
                           headers=bearer(token)).status_code == 201
    listing = {}
    for user in ("alice", "bob"):
        token = get_token(served, "registry:catalog:*", headers=basic(user, users[user])).get_json()["token"]
        resp = served.get("/v2/_catalog", headers=bearer(token))
        assert resp.status_code == 200
        listing[user] = resp.get_json()["repositories"]
    assert listing == {"alice": ["bob/b", "public/a", "zed/c"], "bob": ["bob/b", "public/a"]}
    anon = get_token(served, "registry:catalog:*").get_json()["token"]
    assert served.get("/v2/_catalog", headers=bearer(anon)).status_code == 401


def test_metrics_follow_a_metrics_rule(served, users):
    scraped = {}
    for user in ("alice", "bob"):
        token = get_token(served, "registry:metrics:*", headers=basic(user, users[user])).get_json()["token"]
        scraped[user] = served.get("/metrics", headers=bearer(token)).status_code
    assert scraped == {"alice": 200, "bob": 401}  # bob's token holds nothing: insufficient scope


def test_expired_issued_token_is_refused(make_app, token_server_config, users):
    app = make_app(token_server_config)
    client = app.test_client()
    token = get_token(client, "repository:bob/app:pull", headers=basic("bob", users["bob"])).get_json()["token"]
    assert client.get("/v2/bob/app/tags/list", headers=bearer(token)).status_code == 404  # allowed, nothing there
    verifier = app.extensions["cargohold"].auth.verifier
    issued = time.time()
    verifier.clock = lambda: issued + 300 + 59  # within the leeway (the token was remembered: still checked)
    assert client.get("/v2/bob/app/tags/list", headers=bearer(token)).status_code == 404
    verifier.clock = lambda: issued + 300 + 62
    resp = client.get("/v2/bob/app/tags/list", headers=bearer(token))
    assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert "expired" in resp.get_json()["errors"][0]["message"]


@pytest.mark.parametrize("change,message", [
    (lambda c, other: c["tokenserver"].update(signingkey=str(other.paths["key"])),
     "tokenserver.signingkey: its public key is not in auth.token.rootcertbundle"),
    (lambda c, other: c["tokenserver"].update(issuer="someone-else"), "differs from auth.token.issuer"),
    (lambda c, other: c["tokenserver"].update(service="other"), "differs from auth.token.service"),
    (lambda c, other: c["tokenserver"].update(signingkey="/nonexistent.key"),
     "tokenserver.signingkey: cannot read /nonexistent.key"),
    (lambda c, other: c["tokenserver"].update(rules="/nonexistent.yml"), "tokenserver.rules: /nonexistent.yml"),
    (lambda c, other: c["tokenserver"].update(htpasswd="/nonexistent"), "tokenserver.htpasswd: /nonexistent"),
    (lambda c, other: c["tokenserver"].update(expiration="30s"), "tokenserver.expiration: at least 60s"),
    (lambda c, other: c["tokenserver"].pop("signingkey"), "tokenserver.signingkey: required"),
    (lambda c, other: c["tokenserver"].update(path="/v2/token"), "tokenserver.path: must start with '/' and lie"),
    (lambda c, other: c["tokenserver"].update(path="token"), "tokenserver.path: must start with '/' and lie"),
    (lambda c, other: (c["tokenserver"].update(path="/token"), c["auth"]["token"].update(autoredirect=True)),
     "auth.token.autoredirectpath '/auth/token' differs from tokenserver.path '/token'"),
])
def test_startup_checks_the_token_server(token_server_config, stranger, change, message):
    change(token_server_config, stranger)
    with pytest.raises(StartupError, match="auth-token") as e:
        create_app(config=token_server_config, environ={})
    assert message in str(e.value)


def test_token_server_path_is_configurable(make_app, token_server_config):
    token_server_config["tokenserver"]["path"] = "/token"
    client = make_app(token_server_config).test_client()
    assert client.get("/token", query_string={"service": SERVICE}).status_code == 200
    assert client.get("/auth/token").status_code == 404


def test_configured_entirely_from_the_environment(bundle, signer, htpasswd_file, rules_file, users):
    environ = {
        "CARGOHOLD_STORAGE": "inmemory",
        "CARGOHOLD_AUTH": "token",
        "CARGOHOLD_AUTH_TOKEN_AUTOREDIRECT": "true",
        "CARGOHOLD_AUTH_TOKEN_SERVICE": "env-registry",
        "CARGOHOLD_AUTH_TOKEN_ISSUER": "env-issuer",
        "CARGOHOLD_AUTH_TOKEN_ROOTCERTBUNDLE": str(bundle),
        "CARGOHOLD_TOKENSERVER_SIGNINGKEY": str(signer.paths["key"]),
        "CARGOHOLD_TOKENSERVER_HTPASSWD": str(htpasswd_file),
        "CARGOHOLD_TOKENSERVER_RULES": str(rules_file),
        "CARGOHOLD_TOKENSERVER_EXPIRATION": "10m",
    }
    app = create_app(environ=environ)
    try:
        client = app.test_client()
        resp = client.get("/v2/bob/app/tags/list")
        assert 'realm="http://localhost/auth/token",service="env-registry"' in resp.headers["WWW-Authenticate"]
        resp = client.get("/auth/token", query_string={"service": "env-registry", "scope": "repository:bob/app:pull"},
                          headers=basic("bob", users["bob"]))
        assert resp.get_json()["expires_in"] == 600
        assert client.get("/v2/bob/app/tags/list", headers=bearer(resp.get_json()["token"])).status_code == 404
    finally:
        app.cargohold_shutdown()


def test_unknown_token_server_key_is_named(token_server_config):
    token_server_config["tokenserver"]["signing_key"] = "x"
    with pytest.raises(ConfigError, match="unknown key 'tokenserver.signing_key'"):
        create_app(config=token_server_config, environ={})


def test_token_server_alone_issues_for_another_registry(make_app, signer, htpasswd_file, users):
    # No auth.token: this registry is open and only issues tokens for another one.
    config = {"storage": {"inmemory": {}}, "tokenserver": {
        "signingkey": str(signer.paths["key"]), "htpasswd": str(htpasswd_file), "service": "elsewhere",
        "issuer": "central-auth"}}
    client = make_app(config).test_client()
    resp = client.get("/auth/token", query_string={"service": "elsewhere", "scope": "repository:x/y:push"},
                      headers=basic("alice", users["alice"]))
    claims = unverified_claims(resp.get_json()["token"])
    assert (claims["iss"], claims["aud"], claims["access"]) == (
        "central-auth", "elsewhere", [{"type": "repository", "name": "x/y", "actions": ["push"]}])  # no rules: all
    header = resp.get_json()["token"].split(".")[0]
    assert signer.kid in base64.urlsafe_b64decode(header + "==").decode()
    with pytest.raises(StartupError, match="tokenserver.service: required"):
        create_app(config={"storage": {"inmemory": {}}, "tokenserver": {"signingkey": str(signer.paths["key"])}},
                   environ={})


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_form_is_refused_without_being_read_whole(served, chunked):
    # The form is parsed in memory at once: a client must not make the
    # server hold an arbitrary body (with or without Content-Length).
    body = b"grant_type=password&username=" + b"a" * (1 << 20)
    # Without a length, the servers cargohold runs on mark the stream as
    # ending at the body's end (wsgi.input_terminated).
    kwargs = {"input_stream": io.BytesIO(body), "environ_overrides": {"wsgi.input_terminated": True}} \
        if chunked else {"data": body}
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    resp = served.post("/auth/token", headers=headers, **kwargs)
    assert resp.status_code == 400, resp.data
    assert resp.get_json()["errors"][0]["code"] == "TOKEN_REQUEST_INVALID"
    assert "65536" in resp.get_json()["errors"][0]["message"]


def test_a_small_chunked_form_is_read(served):
    resp = served.post("/auth/token", input_stream=io.BytesIO(b"grant_type=nonsense&service=x"),
                       headers={"Content-Type": "application/x-www-form-urlencoded", "Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})
    assert resp.status_code == 400
    assert "nonsense" in resp.get_json()["errors"][0]["message"] or "'x'" in resp.get_json()["errors"][0]["message"]
