"""The pull-through cache inside the app: off without a ``proxy`` section,
and the mirror's own client authentication and access rules apply to
proxied repositories before the upstream is asked.  The upstream is a real
``cargohold serve`` on loopback; the mirror is an in-process app."""

from __future__ import annotations

import json
import socket
import time

import pytest
import requests

from cargohold.manifests import OCI_MANIFEST
from cargohold.proxy import EXTENSION
from cargohold.testing.auth import basic, write_htpasswd
from cargohold.testing.server import LiveRegistry

BLOB = b"pulled through the cache\n"
DIGEST = "sha256:" + __import__("hashlib").sha256(BLOB).hexdigest()


@pytest.fixture(scope="module")
def upstream():
    with LiveRegistry() as live:
        for repository in ("team/app", "team/other"):
            resp = requests.post(f"{live.url}/v2/{repository}/blobs/uploads/", params={"digest": DIGEST}, data=BLOB,
                                 timeout=30)
            assert resp.status_code == 201, resp.text
        yield live


def test_without_a_proxy_section_nothing_is_proxied(app):
    assert EXTENSION not in app.extensions
    client = app.test_client()
    resp = client.post("/v2/anything/blobs/uploads/", query_string={"digest": DIGEST}, data=BLOB)
    assert resp.status_code == 201


def test_client_auth_and_access_rules_apply_to_proxied_repositories(make_app, upstream, tmp_path):
    rules = tmp_path / "access.yml"
    rules.write_text("rules:\n"
                     "  - {repositories: ['mirror/public/*'], users: [anonymous, '*'], actions: [pull]}\n"
                     "  - {repositories: ['mirror/**'], users: [alice], actions: [pull, push]}\n")
    app = make_app({"storage": {"inmemory": {}},
                    "auth": {"htpasswd": {"realm": "mirror", "path": write_htpasswd(tmp_path / "users", {
                        "alice": "pw", "bob": "pw"}), "access": str(rules)}},
                    "proxy": {"upstreams": [{"url": upstream.url, "prefix": "mirror/", "timeout": "5s"}]}})
    client = app.test_client()
    try:
        url = f"/v2/mirror/team/app/blobs/{DIGEST}"
        anonymous = client.get(url)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="mirror"'
        assert client.get(url, headers=basic("bob", "pw")).status_code == 403
        assert client.get(url, headers=basic("alice", "pw")).status_code == 200
        assert client.get(url, headers=basic("alice", "pw")).data == BLOB
        # Refused writes are refused after authentication, as read-only mode's are.
        assert client.post("/v2/mirror/team/app/blobs/uploads/").status_code == 401
        pushed = client.post("/v2/mirror/team/app/blobs/uploads/", headers=basic("alice", "pw"))
        assert pushed.status_code == 405
        assert pushed.json["errors"][0]["code"] == "UNSUPPORTED"
    finally:
        app.cargohold_shutdown()


def test_an_upstream_that_never_answers_fails_within_the_timeout(make_app):
    """A socket that accepts connections (in its backlog) and never answers:
    the pull ends with 503 UNAVAILABLE after the timeout, not a hang."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        app = make_app({"storage": {"inmemory": {}},
                        "proxy": {"upstreams": [{"url": f"http://127.0.0.1:{port}", "prefix": "slow/",
                                                 "timeout": "1s"}]}})
        try:
            client = app.test_client()
            for path in ("/v2/slow/app/manifests/latest", f"/v2/slow/app/blobs/{DIGEST}", "/v2/slow/app/tags/list"):
                started = time.monotonic()
                resp = client.get(path)
                elapsed = time.monotonic() - started
                if path.endswith("tags/list"):  # nothing cached: the local repository is unknown
                    assert resp.status_code == 404 and resp.json["errors"][0]["code"] == "NAME_UNKNOWN"
                else:
                    assert resp.status_code == 503, resp.data
                    error = resp.json["errors"][0]
                    assert error["code"] == "UNAVAILABLE" and "timed out" in error["message"]
                assert elapsed < 5, f"{path} took {elapsed:.1f}s"
        finally:
            app.cargohold_shutdown()


def test_cached_bytes_are_served_to_another_repository_only_if_the_upstream_has_it_there(make_app, upstream):
    app = make_app({"storage": {"inmemory": {}},
                    "proxy": {"upstreams": [{"url": upstream.url, "prefix": "m/", "timeout": "5s"}]}})
    client = app.test_client()
    try:
        assert client.get(f"/v2/m/team/app/blobs/{DIGEST}").data == BLOB  # fetched and cached
        assert client.get(f"/v2/m/team/other/blobs/{DIGEST}").data == BLOB  # upstream confirms: linked
        resp = client.get(f"/v2/m/team/none/blobs/{DIGEST}")
        assert resp.status_code == 404 and resp.json["errors"][0]["code"] == "BLOB_UNKNOWN"
        lookups = app.extensions["cargohold"].metrics.counters["proxy_lookups"]
        assert lookups[(upstream.url, "blob", "miss")] == 1
        assert lookups[(upstream.url, "blob", "hit")] == 1
    finally:
        app.cargohold_shutdown()


def test_tags_revalidate_and_a_tag_gone_upstream_is_gone_here(make_app, upstream):
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [], "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": DIGEST, "size": len(BLOB)}}).encode()
    resp = requests.put(f"{upstream.url}/v2/team/app/manifests/short-lived", data=manifest, timeout=30,
                        headers={"Content-Type": OCI_MANIFEST})
    assert resp.status_code == 201, resp.text
    app = make_app({"storage": {"inmemory": {}},
                    "proxy": {"upstreams": [{"url": upstream.url, "prefix": "m/", "tagttl": 0, "timeout": "5s"}]}})
    client = app.test_client()
    try:
        assert client.get("/v2/m/team/app/manifests/short-lived").data == manifest
        assert client.get("/v2/m/team/app/tags/list").json["tags"] == ["short-lived"]
        assert requests.delete(f"{upstream.url}/v2/team/app/manifests/short-lived", timeout=30).status_code == 202
        resp = client.get("/v2/m/team/app/manifests/short-lived")
        assert resp.status_code == 404 and resp.json["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        # Gone from the cache too, not only hidden while the upstream answers.
        assert app.extensions["cargohold"].registry.manifests.tags("m/team/app") == []
    finally:
        app.cargohold_shutdown()
