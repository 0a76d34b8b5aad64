"""The catalog's pages through Flask's test client: configuration, who sees
what under htpasswd and token auth, pagination, deletes and bad input."""

from __future__ import annotations

import json
import re

import pytest

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.plugins import StartupError
from cargohold.testing.auth import basic
from cargohold_ui.testing import descriptor, push

ALICE = basic("alice", "wonderland")
BOB = basic("bob", "builder")
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def put_image(client, name: str, tags: list[str], arch: str = "amd64", entrypoint=("/bin/app",),
              headers: dict | None = None, base: str = "") -> str:
    """Push a one-layer image to ``name`` under ``tags`` over the API; its digest."""
    config = json.dumps({"os": "linux", "architecture": arch, "created": "2026-01-01T00:00:00Z",
                         "config": {"Entrypoint": list(entrypoint), "Labels": {"team": "core"}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = f"layer of {name} {arch}".encode() * 100
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor(config, CONFIG_TYPE),
                "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar+gzip")]}
    digest = ""
    for tag in tags:
        digest = push(client, base, name, tag, manifest, [config, layer], headers if headers is not None else ALICE)
    return digest


@pytest.fixture
def make_app(auth_section):
    """``make_app(tmp_path, ui=..., auth=True, **sections)``: an app with the
    UI enabled and four repositories pushed (with htpasswd auth unless
    ``auth`` is false)."""
    def make(tmp_path, ui=None, auth=True, **extra):
        config = {"storage": {"inmemory": {}, "delete": {"enabled": True}}, "ui": {"enabled": True, **(ui or {})}}
        if auth:
            config["auth"] = auth_section(tmp_path)
        for key, value in extra.items():
            config[key] = value
        app = create_app(config=config, environ={})
        client = app.test_client()
        base = (extra.get("http") or {}).get("prefix", "")
        for name in ("public/app", "public/tools", "private/secret", "team/web"):
            put_image(client, name, ["1.0", "latest"], base=base)
        return app

    return make


def repos(resp) -> list[str]:
    return re.findall(r'class="repo" href="[^"]+">([^<]+)</a>', resp.get_data(as_text=True))


def test_off_by_default(tmp_path):
    app = create_app(config={"storage": {"inmemory": {}}}, environ={})
    resp = app.test_client().get("/ui/")
    assert resp.status_code == 404
    assert resp.content_type == "application/json" and resp.json["errors"]


def test_path_is_configurable_and_checked(tmp_path, make_app):
    app = make_app(tmp_path, ui={"path": "/catalog/"}, auth=False)
    client = app.test_client()
    assert client.get("/catalog/").status_code == 200
    assert client.get("/catalog/static/ui.js").status_code == 200
    assert client.get("/ui/").status_code == 404
    with pytest.raises((ConfigError, StartupError), match="ui.path"):
        create_app(config={"storage": {"inmemory": {}}, "ui": {"enabled": True, "path": "/v2/"}}, environ={})


def test_environment_enables_it(tmp_path):
    app = create_app(config={"storage": {"inmemory": {}}},
                     environ={"CARGOHOLD_UI_ENABLED": "true", "CARGOHOLD_UI_PATH": "/browse"})
    assert app.test_client().get("/browse/").status_code == 200


def test_visibility_follows_the_access_rules(tmp_path, make_app):
    client = make_app(tmp_path).test_client()
    # Anonymous callers have no catalog right: each repository is asked about.
    assert repos(client.get("/ui/")) == ["public/app", "public/tools"]
    assert repos(client.get("/ui/", headers=ALICE)) == ["private/secret", "public/app", "public/tools", "team/web"]
    assert repos(client.get("/ui/", headers=BOB)) == ["team/web"]
    assert repos(client.get("/ui/?fragment=1&q=SEC", headers=ALICE)) == ["private/secret"]
    assert repos(client.get("/ui/?fragment=1&q=sec", headers=BOB)) == []
    for path in ("/ui/r/private/secret", "/ui/r/private/secret/-/manifest/1.0"):
        for headers in ({}, BOB):
            resp = client.get(path, headers=headers)
            assert resp.status_code == 404 and resp.content_type.startswith("text/html")
            # Not in what the page says (the sign-in link's target is the address asked for).
            assert "private/secret" not in re.sub(r"<[^>]+>", "", resp.get_data(as_text=True))
        assert client.get(path, headers=ALICE).status_code == 200
    # Wrong credentials: one 401 asking for others, checked once per page.
    for path in ("/ui/", "/ui/r/public/app"):
        resp = client.get(path, headers=basic("alice", "nope"))
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Basic ")
        assert repos(resp) == [] and 'id="failed"' in resp.get_data(as_text=True)


def test_login_asks_the_browser_for_basic_credentials(tmp_path, make_app):
    client = make_app(tmp_path).test_client()
    resp = client.get("/ui/login?next=/ui/r/team/web")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    assert client.get("/ui/", headers={}).get_data(as_text=True).count('id="login"') == 1
    resp = client.get("/ui/login?next=/ui/r/team/web", headers=BOB)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/ui/r/team/web")
    # Only pages of the catalog as targets.
    assert client.get("/ui/login?next=https://elsewhere.test/", headers=BOB).headers["Location"].endswith("/ui/")
    # Pages name the signed-in user and carry no credentials.
    page = client.get("/ui/", headers=BOB).get_data(as_text=True)
    assert 'id="user">bob<' in page and "builder" not in page


def test_open_registry_has_no_sign_in(tmp_path, make_app):
    client = make_app(tmp_path, auth=False).test_client()
    page = client.get("/ui/").get_data(as_text=True)
    assert repos(client.get("/ui/")) == ["private/secret", "public/app", "public/tools", "team/web"]
    assert 'id="login"' not in page
    assert "no sign-in" in client.get("/ui/login").get_data(as_text=True)


def test_token_auth_sign_in_with_a_token(tmp_path):
    from cargohold_auth_token.testing import Signer, bearer, token_auth_config

    signer = Signer(tmp_path / "keys")
    app = create_app(config={"storage": {"inmemory": {}}, "ui": {"enabled": True},
                             "auth": token_auth_config(signer.paths["crt"])}, environ={})
    client = app.test_client()
    admin = bearer(signer.token([("repository", n, ["push", "pull"]) for n in ("public/app", "private/secret")]))
    for name in ("public/app", "private/secret"):
        put_image(client, name, ["1.0"], headers=admin)
    resp = client.get("/ui/login")
    assert resp.status_code == 401 and "WWW-Authenticate" not in resp.headers
    assert 'name="token"' in resp.get_data(as_text=True)
    token = signer.token([("registry", "catalog", ["*"]), ("repository", "public/app", ["pull"])])
    resp = client.post("/ui/login", data={"token": token, "next": "/ui/"})
    assert resp.status_code == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    page = client.get("/ui/")
    assert 'id="user">alice<' in page.get_data(as_text=True)
    assert token not in page.get_data(as_text=True)
    assert client.get("/ui/r/public/app").status_code == 200
    assert client.get("/ui/r/private/secret").status_code == 404
    assert client.post("/ui/logout").status_code == 303
    assert 'id="user"' not in client.get("/ui/").get_data(as_text=True)


def test_pages_and_limits(tmp_path, make_app):
    app = make_app(tmp_path, auth=False)
    client = app.test_client()
    for i in range(7):
        put_image(client, f"many/r{i}", ["t"])
    first = client.get("/ui/?n=3")
    assert repos(first) == ["many/r0", "many/r1", "many/r2"]
    nxt = re.search(r'id="next" href="([^"]+)"', first.get_data(as_text=True)).group(1).replace("&amp;", "&")
    assert repos(client.get(nxt)) == ["many/r3", "many/r4", "many/r5"]
    assert repos(client.get("/ui/?n=abc"))[:2] == ["many/r0", "many/r1"]  # default size
    assert len(repos(client.get("/ui/?n=100000"))) == 11
    assert repos(client.get("/ui/?q=r6&fragment=1")) == ["many/r6"]


def test_read_budget_bounds_a_sparse_page(tmp_path, monkeypatch, make_app):
    from cargohold_ui import views

    monkeypatch.setattr(views, "WALK_BUDGET", 2)
    client = make_app(tmp_path).test_client()
    page = client.get("/ui/", headers=BOB)  # bob sees team/web only, the last of four
    assert repos(page) == [] and "in this stretch" in page.get_data(as_text=True)
    nxt = re.search(r'id="next" href="([^"]+)"', page.get_data(as_text=True)).group(1).replace("&amp;", "&")
    assert repos(client.get(nxt, headers=BOB)) == ["team/web"]


def test_tags_and_manifest(tmp_path, make_app):
    app = make_app(tmp_path, auth=False)
    client = app.test_client()
    digest = put_image(client, "multi/app", ["b", "a", "c"], arch="arm64", entrypoint=("/usr/bin/env", "run me"))
    page = client.get("/ui/r/multi/app").get_data(as_text=True)
    assert re.findall(r'class="tag"[^>]*>([^<]+)<', page) == ["a", "b", "c"]
    assert "linux/arm64" in page and digest.partition(":")[2][:12] in page
    second = client.get("/ui/r/multi/app?n=1&last=a").get_data(as_text=True)
    assert re.findall(r'class="tag"[^>]*>([^<]+)<', second) == ["b"]
    for ref in ("a", digest):
        resp = client.get(f"/ui/r/multi/app/-/manifest/{ref}")
        text = resp.get_data(as_text=True)
        assert resp.status_code == 200
        assert "linux/arm64" in text and "2026-01-01T00:00:00Z" in text and '/usr/bin/env &#34;run me&#34;' in text
        assert "<code>team</code> = core" in text


@pytest.mark.parametrize("path", [
    "/ui/r/UPPER/case", "/ui/r/a/-/manifest/sha256:zzz", "/ui/r/public/app/-/manifest/sha256:" + "0" * 64,
    "/ui/r/public/app/-/manifest/.bad", "/ui/r/public/app/-/manifest/nope", "/ui/r/nope/nope",
    "/ui/r/public/app/-/delete?tag=1.0", "/ui/nothing/here", "/ui/r/" + "a" * 300,
])
def test_bad_paths_are_html_404s(tmp_path, path, make_app):
    client = make_app(tmp_path, auth=False).test_client()
    resp = client.get(path)
    assert resp.status_code == 404, resp.get_data(as_text=True)[:500]
    assert resp.content_type.startswith("text/html")
    assert "Content-Security-Policy" in resp.headers


def test_security_headers(tmp_path, make_app):
    client = make_app(tmp_path, auth=False).test_client()
    for path in ("/ui/", "/ui/r/public/app", "/ui/r/public/app/-/manifest/1.0", "/ui/login"):
        resp = client.get(path)
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'")
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Cache-Control"] == "no-store"
        body = resp.get_data(as_text=True)
        assert "<script>" not in body and "style=" not in body and "http://" not in body.replace("http://localhost", "")


def test_delete_needs_the_setting_the_storage_switch_and_the_right(tmp_path, make_app):
    app = make_app(tmp_path, ui={"delete": True})
    client = app.test_client()
    assert "Delete" not in client.get("/ui/r/public/app").get_data(as_text=True)  # anonymous
    assert "Delete" not in client.get("/ui/r/team/web", headers=BOB).get_data(as_text=True)  # pull only
    assert client.get("/ui/r/team/web/-/delete?tag=1.0", headers=BOB).status_code == 404
    assert "a-delete" not in client.get("/ui/r/team/web", headers=ALICE).get_data(as_text=True)
    confirm = client.get("/ui/r/team/web/-/delete?tag=1.0", headers=ALICE)
    assert confirm.status_code == 200 and 'name="confirm" value="1.0"' in confirm.get_data(as_text=True)
    # From another site, or without the confirmation, nothing is deleted.
    assert client.post("/ui/r/team/web/-/delete", data={"tag": "1.0", "confirm": "1.0"},
                       headers={**ALICE, "Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.post("/ui/r/team/web/-/delete", data={"tag": "1.0", "confirm": "1.0"},
                       headers={**ALICE, "Origin": "https://elsewhere.test"}).status_code == 403
    assert client.post("/ui/r/team/web/-/delete", data={"tag": "1.0"}, headers=ALICE).status_code == 403
    resp = client.post("/ui/r/team/web/-/delete", data={"tag": "1.0", "confirm": "1.0"},
                       headers={**ALICE, "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"})
    assert resp.status_code == 303
    assert client.get("/v2/team/web/tags/list", headers=ALICE).json["tags"] == ["latest"]
    # A manifest by digest, tags with it.
    digest = app.extensions["cargohold"].registry.manifests.resolve_tag("team/web", "latest")
    resp = client.post("/ui/r/team/web/-/delete", data={"digest": digest, "confirm": digest}, headers=ALICE)
    assert resp.status_code == 303
    assert client.get(f"/v2/team/web/manifests/{digest}", headers=ALICE).status_code == 404


@pytest.mark.parametrize("ui,storage_delete", [({}, True), ({"delete": True}, False)])
def test_delete_is_off_unless_both_switches_are_on(tmp_path, ui, storage_delete, make_app):
    app = make_app(tmp_path, ui=ui, storage={"inmemory": {}, "delete": {"enabled": storage_delete}})
    client = app.test_client()
    assert "Delete" not in client.get("/ui/r/team/web", headers=ALICE).get_data(as_text=True)
    assert client.post("/ui/r/team/web/-/delete", data={"tag": "1.0", "confirm": "1.0"},
                       headers=ALICE).status_code == 404


def test_a_large_index_is_summarised_without_reading_every_image(tmp_path, make_app):
    app = make_app(tmp_path, auth=False)
    client = app.test_client()
    children = []
    for i in range(70):
        digest = put_image(client, "wide/app", [f"arch{i}"], arch=f"arch{i:02d}", headers={})
        children.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
                         "size": 1, "platform": {"os": "linux", "architecture": f"arch{i:02d}"}})
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children}
    push(client, "", "wide/app", "all", index, [], {})
    row = client.get("/ui/r/wide/app?n=1").get_data(as_text=True)
    assert "+58 more" in row and row.count('class="platform"') == 12
    page = client.get("/ui/r/wide/app/-/manifest/all").get_data(as_text=True)
    assert page.count('class="child"') == 70 and "linux/arch69" in page


def test_below_the_http_prefix(tmp_path, make_app):
    app = make_app(tmp_path, auth=False, http={"prefix": "/registry"})
    client = app.test_client()
    page = client.get("/registry/ui/r/public/app/-/manifest/1.0").get_data(as_text=True)
    assert 'href="/registry/ui/static/ui.css"' in page and 'href="/registry/ui/r/public/app"' in page
    assert "docker pull localhost/registry/public/app:1.0" in page
    assert client.get("/registry/ui/r/nope").status_code == 404
    assert client.get("/registry/ui/r/nope").content_type.startswith("text/html")
