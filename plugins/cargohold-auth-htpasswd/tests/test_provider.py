"""The htpasswd provider inside a real app (Flask test client): answers for
missing, malformed and wrong credentials, access rules, the catalog, the
credential cache and reloading."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time

import bcrypt
import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.testing.auth import basic, htpasswd_line, write_htpasswd

ALICE, BOB, CI = basic("alice", "wonderland"), basic("bob", "builder"), basic("robot", "beep")
RULES = """
groups:
  admins: [alice]
rules:
  - repositories: ["public/*"]
    users: [anonymous]
    actions: [pull]
  - repositories: ["public/*", "team/**"]
    users: ["*"]
    actions: [pull]
  - repositories: ["**"]
    users: ["group:admins"]
    actions: ["*"]
  - repositories: ["team/**"]
    users: [robot]
    actions: [push]
  - registry: catalog
    users: ["*", anonymous]
"""


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def files(tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "wonderland", "bob": "builder", "robot": "beep"})
    rules = tmp_path / "access.yml"
    rules.write_text(RULES)
    return {"path": htpasswd, "access": str(rules)}


@pytest.fixture
def make_client():
    def make(**params):
        config = {"storage": {"inmemory": {}, "delete": {"enabled": True}},
                  "auth": {"htpasswd": {"realm": "test realm", **params}}}
        app = create_app(config=config, environ={})
        return app.test_client(), app.extensions["cargohold"].auth

    return make


@pytest.fixture
def client(make_client, files):
    return make_client(**files)[0]


def push(client, name, data, headers):
    return client.post(f"/v2/{name}/blobs/uploads/?digest={digest(data)}", data=data, headers=headers)


def assert_challenged(resp, realm="test realm"):
    assert resp.status_code == 401, resp.data
    assert resp.headers["WWW-Authenticate"] == f'Basic realm="{realm}"'
    assert resp.get_json()["errors"][0]["code"] == "UNAUTHORIZED"


# -- credentials ------------------------------------------------------------------


def test_base_check_wants_credentials(client):
    assert_challenged(client.get("/v2/"))
    assert client.get("/v2/", headers=ALICE).status_code == 200


@pytest.mark.parametrize("header", [
    pytest.param(basic("alice", "wrong")["Authorization"], id="wrong-password"),
    pytest.param(basic("mallory", "wonderland")["Authorization"], id="unknown-user"),
    pytest.param(basic("alice", "")["Authorization"], id="empty-password"),
    pytest.param(basic("", "wonderland")["Authorization"], id="empty-user"),
    pytest.param(basic("alice", "wonderland" + "x" * 80)["Authorization"], id="over-72-bytes"),
    pytest.param("Basic !!!notbase64", id="not-base64"),
    pytest.param("Basic " + base64.b64encode(b"alicewonderland").decode(), id="no-colon"),
    pytest.param("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), id="user-not-utf8"),
    pytest.param("Basic", id="scheme-only"),
])
def test_bad_credentials_are_challenged(client, header, caplog):
    caplog.set_level(logging.WARNING, "cargohold.auth")
    for method, path in [("GET", "/v2/"), ("GET", "/v2/public/app/tags/list"), ("POST", "/v2/team/x/blobs/uploads/")]:
        resp = client.open(path, method=method, headers={"Authorization": header})
        assert_challenged(resp)
        assert resp.get_json()["errors"][0]["message"] == "invalid credentials"
    assert "authentication failed" in caplog.text
    assert "wonderland" not in caplog.text  # passwords never logged


def test_failed_attempt_logs_user_and_address_not_password(client, caplog):
    caplog.set_level(logging.WARNING, "cargohold.auth")
    client.get("/v2/", headers=basic("alice", "s3cret-guess"), environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert "'alice'" in caplog.text and "192.0.2.7" in caplog.text and "wrong password" in caplog.text
    assert "s3cret-guess" not in caplog.text


def test_other_schemes_are_anonymous(client):
    resp = client.get("/v2/public/app/tags/list", headers={"Authorization": "Bearer abc"})
    assert resp.status_code == 404  # anonymous pull allowed; the repository is unknown
    assert_challenged(client.get("/v2/team/app/tags/list", headers={"Authorization": "Bearer abc"}))


def test_empty_user_and_password_are_anonymous(client):
    """skopeo and containerd answer a Basic challenge with ':' when they have
    no credentials."""
    empty = basic("", "")
    assert client.get("/v2/public/app/tags/list", headers=empty).status_code == 404  # allowed, unknown
    assert_challenged(client.get("/v2/team/app/tags/list", headers=empty))
    resp = client.get("/v2/", headers=empty)
    assert_challenged(resp)
    assert resp.get_json()["errors"][0]["message"] == "authentication required"


def test_2a_2b_and_2y_hashes_are_accepted(tmp_path, make_client):
    path = tmp_path / "htpasswd"
    path.write_text("".join(htpasswd_line(u, "pw", variant=v) + "\n" for u, v in
                            [("a", "2a"), ("b", "2b"), ("y", "2y")]))
    client, _ = make_client(path=str(path))
    for user in "aby":
        assert client.get("/v2/", headers=basic(user, "pw")).status_code == 200


# -- access rules -------------------------------------------------------------------


def test_anonymous_pull_of_public_repository_but_push_needs_credentials(client):
    data = b"public layer"
    assert push(client, "public/app", data, ALICE).status_code == 201
    resp = client.get(f"/v2/public/app/blobs/{digest(data)}")
    assert resp.status_code == 200 and resp.data == data
    assert client.head(f"/v2/public/app/blobs/{digest(data)}").status_code == 200

    resp = push(client, "public/app", b"anonymous push", {})
    assert_challenged(resp)
    assert resp.get_json()["errors"][0]["detail"] == [{"Type": "repository", "Name": "public/app", "Action": "push"}]
    assert client.head(f"/v2/public/app/blobs/{digest(b'anonymous push')}").status_code == 404
    assert_challenged(client.delete(f"/v2/public/app/blobs/{digest(data)}"))
    # private repositories are not readable anonymously
    assert_challenged(client.get(f"/v2/team/app/blobs/{digest(data)}"))


def test_authenticated_but_not_allowed_is_403(client):
    resp = push(client, "public/app", b"bob's", BOB)
    assert resp.status_code == 403
    assert resp.get_json()["errors"][0]["code"] == "DENIED"
    assert "WWW-Authenticate" not in resp.headers
    assert client.head(f"/v2/public/app/blobs/{digest(b'bobs')}", headers=ALICE).status_code == 404
    assert client.get("/v2/other/app/tags/list", headers=BOB).status_code == 403


def test_grants_accumulate(client):
    data = b"robot layer"
    assert push(client, "team/app", data, CI).status_code == 201  # pull via "*", push via its own rule
    assert client.get(f"/v2/team/app/blobs/{digest(data)}", headers=BOB).data == data
    assert client.delete(f"/v2/team/app/blobs/{digest(data)}", headers=CI).status_code == 403
    assert client.delete(f"/v2/team/app/blobs/{digest(data)}", headers=ALICE).status_code == 202


def test_changed_rules_apply_without_a_restart(client, files):
    assert push(client, "other/app", b"by bob", BOB).status_code == 403
    with open(files["access"], "a") as f:
        f.write('  - repositories: ["other/*"]\n    users: [bob]\n    actions: [pull, push]\n')
    time.sleep(1.1)  # the file is looked at once a second at most
    assert push(client, "other/app", b"by bob", BOB).status_code == 201
    assert client.get(f"/v2/other/app/blobs/{digest(b'by bob')}", headers=BOB).status_code == 200


def test_mount_needs_pull_on_source(client):
    data = b"secret"
    assert push(client, "secret/src", data, ALICE).status_code == 201
    resp = client.post(f"/v2/team/app/blobs/uploads/?mount={digest(data)}&from=secret/src", headers=CI)
    assert resp.status_code == 403
    assert client.head(f"/v2/team/app/blobs/{digest(data)}", headers=ALICE).status_code == 404


def test_catalog_lists_only_pullable_repositories(client):
    for name in ("public/a", "team/b", "secret/c"):
        assert push(client, name, name.encode(), ALICE).status_code == 201
    assert client.get("/v2/_catalog", headers=ALICE).get_json() == {"repositories": ["public/a", "secret/c", "team/b"]}
    assert client.get("/v2/_catalog", headers=BOB).get_json() == {"repositories": ["public/a", "team/b"]}
    assert client.get("/v2/_catalog").get_json() == {"repositories": ["public/a"]}
    resp = client.get("/v2/_catalog?n=1", headers=BOB)
    assert resp.get_json() == {"repositories": ["public/a"]} and "last=public%2Fa" in resp.headers["Link"]


def test_without_rules_every_user_may_do_everything_and_anonymous_nothing(make_client, files):
    client, _ = make_client(path=files["path"])
    assert push(client, "any/repo", b"x", BOB).status_code == 201
    assert client.get("/v2/_catalog", headers=BOB).get_json() == {"repositories": ["any/repo"]}
    assert_challenged(client.get(f"/v2/any/repo/blobs/{digest(b'x')}"))
    assert_challenged(client.get("/v2/_catalog"))


def test_catalog_needs_a_catalog_rule(tmp_path, make_client, files):
    rules = tmp_path / "norules.yml"
    rules.write_text("rules:\n  - repositories: ['**']\n    users: ['*']\n    actions: ['*']\n")
    client, _ = make_client(path=files["path"], access=str(rules))
    assert client.get("/v2/_catalog", headers=BOB).status_code == 403


def test_metrics_are_scraped_by_users_of_a_metrics_rule(tmp_path, make_client, files):
    rules = tmp_path / "ops.yml"
    rules.write_text("rules:\n  - registry: metrics\n    users: [alice]\n"
                     "  - repositories: ['**']\n    users: ['*']\n    actions: ['*']\n")
    client, _ = make_client(path=files["path"], access=str(rules))
    resp = client.get("/metrics", headers=ALICE)
    assert resp.status_code == 200 and b"# TYPE" in resp.data
    assert client.get("/metrics", headers=BOB).status_code == 403
    assert_challenged(client.get("/metrics"))
    assert client.get("/v2/_catalog", headers=ALICE).status_code == 403  # metrics only


# -- bcrypt cache and reload -----------------------------------------------------------


@pytest.fixture
def checkpw_calls(monkeypatch):
    calls = []
    real = bcrypt.checkpw

    def counting(password, hashed):
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_verified_credentials_skip_bcrypt(client, checkpw_calls):
    for _ in range(20):
        assert client.get("/v2/", headers=ALICE).status_code == 200
    assert len(checkpw_calls) == 1
    client.get("/v2/", headers=BOB)
    assert len(checkpw_calls) == 2


def test_wrong_passwords_always_cost_bcrypt(client, checkpw_calls):
    for _ in range(3):
        assert client.get("/v2/", headers=basic("alice", "nope")).status_code == 401
    assert len(checkpw_calls) == 3
    for _ in range(3):  # unknown users cost as much (no user enumeration by timing)
        assert client.get("/v2/", headers=basic("nobody", "nope")).status_code == 401
    assert len(checkpw_calls) == 6


def test_cache_entries_expire(make_client, files, checkpw_calls):
    client, provider = make_client(**files, cachettl="1s")
    now = [1000.0]
    provider.htpasswd._clock = lambda: now[0]
    client.get("/v2/", headers=ALICE)
    client.get("/v2/", headers=ALICE)
    assert len(checkpw_calls) == 1
    now[0] += 1.5
    client.get("/v2/", headers=ALICE)
    assert len(checkpw_calls) == 2


def test_cache_can_be_disabled(make_client, files, checkpw_calls):
    client, _ = make_client(**files, cachettl="0s")
    for _ in range(3):
        client.get("/v2/", headers=ALICE)
    assert len(checkpw_calls) == 3


def test_cache_is_keyed_by_hmac_not_password(client):
    client.get("/v2/", headers=ALICE)
    provider = client.application.extensions["cargohold"].auth
    keys = list(provider.htpasswd._cache._data)
    assert len(keys) == 1 and len(keys[0]) == 32
    assert b"wonderland" not in keys[0]
    assert keys[0] != hashlib.sha256(b"alice\0wonderland").digest()


def test_reload_on_change_drops_cache(client, files, checkpw_calls):
    assert client.get("/v2/", headers=ALICE).status_code == 200
    assert len(checkpw_calls) == 1
    write_htpasswd(files["path"], {"alice": "new-password", "carol": "c"})
    assert_challenged(client.get("/v2/", headers=ALICE))  # the cached pair is gone with the old file
    assert client.get("/v2/", headers=basic("alice", "new-password")).status_code == 200
    assert client.get("/v2/", headers=basic("carol", "c")).status_code == 200
    assert_challenged(client.get("/v2/", headers=BOB))  # removed


def test_reload_on_in_place_rewrite(client, files):
    assert client.get("/v2/", headers=BOB).status_code == 200
    with open(files["path"], "r+") as f:  # same inode, same size: mtime/ctime tell
        lines = f.read().splitlines()
        f.seek(0)
        f.write("\n".join(line for line in lines if not line.startswith("bob:")) + "\n#" + "x" * (len(lines[1])) + "\n")
        f.truncate()
    assert_challenged(client.get("/v2/", headers=BOB))
    assert client.get("/v2/", headers=ALICE).status_code == 200


def test_broken_reload_fails_closed_until_fixed(client, files, caplog):
    assert client.get("/v2/", headers=ALICE).status_code == 200
    with open(files["path"], "a") as f:
        f.write("eve:$apr1$abc$def\n")
    assert_challenged(client.get("/v2/", headers=ALICE))
    assert "htpasswd reload failed" in caplog.text and "line 4" in caplog.text
    os.unlink(files["path"])
    assert_challenged(client.get("/v2/", headers=ALICE))
    write_htpasswd(files["path"], {"alice": "wonderland"})
    assert client.get("/v2/", headers=ALICE).status_code == 200


# -- configuration errors -------------------------------------------------------------


@pytest.mark.parametrize("content,message", [
    ("alice:$apr1$xyz$abcdefghijklmnopqrstuv\n", "line 1: user 'alice' has an unsupported password hash (Apache MD5)"),
    ("# comment\n\nbob:{SHA}abc=\n", "line 3: user 'bob' has an unsupported password hash (SHA-1)"),
    ("carol:plain\n", "line 1: user 'carol' has an unsupported password hash (crypt or plain text)"),
    ("no-colon-here\n", "line 1: expected 'user:hash'"),
    ("dave:$2y$12$short\n", "malformed bcrypt"),
])
def test_unsupported_entries_fail_startup_with_line(tmp_path, make_client, content, message):
    path = tmp_path / "htpasswd"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        make_client(path=str(path))
    assert "auth.htpasswd.path" in str(info.value) and message in str(info.value)


def test_duplicate_user_fails_startup(tmp_path, make_client):
    path = tmp_path / "htpasswd"
    path.write_text(htpasswd_line("a", "1") + "\n" + htpasswd_line("a", "2") + "\n")
    with pytest.raises(ConfigError, match="line 2: user 'a' appears more than once"):
        make_client(path=str(path))


def test_config_errors_name_the_key(tmp_path, make_client, files):
    with pytest.raises(ConfigError, match=r"auth\.htpasswd\.path: required"):
        make_client()
    with pytest.raises(ConfigError, match=r"auth\.htpasswd\.path: .*missing: cannot read htpasswd file"):
        make_client(path=str(tmp_path / "missing"))
    bad_rules = tmp_path / "bad.yml"
    bad_rules.write_text("rules:\n  - repositories: [a]\n    users: ['*']\n    actions: [pul]\n")
    with pytest.raises(ConfigError, match=r"auth\.htpasswd\.access: .*bad\.yml: rules\[0\]\.actions: unknown action"):
        make_client(path=files["path"], access=str(bad_rules))
    with pytest.raises(ConfigError, match=r"auth\.htpasswd\.realmm"):
        make_client(path=files["path"], realmm="x")
    with pytest.raises(ConfigError, match=r"auth\.htpasswd\.cachettl"):
        make_client(path=files["path"], cachettl="soon")


def test_environment_overrides(tmp_path, files):
    env = {"CARGOHOLD_AUTH_HTPASSWD_PATH": files["path"], "CARGOHOLD_AUTH_HTPASSWD_REALM": "from env",
           "CARGOHOLD_AUTH_HTPASSWD_CACHETTL": "5s"}
    app = create_app(config={"storage": {"inmemory": {}}, "auth": {"htpasswd": {"path": "/nonexistent"}}},
                     environ=env)
    provider = app.extensions["cargohold"].auth
    assert provider.realm == "from env" and provider.htpasswd.cache_ttl == 5.0
    assert_challenged(app.test_client().get("/v2/"), realm="from env")


def test_realm_is_quoted(tmp_path, make_client, files):
    client, _ = make_client(path=files["path"], realm='my "quoted" realm')
    assert client.get("/v2/").headers["WWW-Authenticate"] == 'Basic realm="my \\"quoted\\" realm"'
