"""Read-only mode (``storage.maintenance.readonly.enabled``): every write is
refused with 405 UNSUPPORTED in the spec's JSON, reads keep working, and a
configuration reload switches it (and the other live keys) in a running app.
The live server's SIGHUP is tested in tests/e2e/test_readonly.py."""

from __future__ import annotations

import copy
import logging

import pytest

from cargohold.app import reload_config
from cargohold.config import ConfigError
from cargohold.testing.auth import basic, write_htpasswd

from .helpers import OCI_MANIFEST, digest_of, error_code, push_blob, push_image

READ_ONLY = "the registry is in read-only mode"


def switched(app, readonly: bool, **sections) -> dict:
    """The app's configuration with read-only mode set to ``readonly`` and
    ``sections`` replaced, as a reloaded file would give it."""
    config = copy.deepcopy(app.config["CARGOHOLD"])
    config["storage"]["maintenance"]["readonly"]["enabled"] = readonly
    config.update(copy.deepcopy(sections))
    return config


@pytest.fixture
def content(client):
    """An image, a tag, a lone blob and an open upload session, pushed
    before read-only mode is switched on."""
    digest, raw = push_image(client, "ro/app", "v1")
    blob = push_blob(client, "ro/app", b"lone blob")
    resp = client.post("/v2/ro/app/blobs/uploads/")
    assert resp.status_code == 202
    return {"manifest": digest, "raw": raw, "blob": blob, "upload": resp.headers["Location"]}


def assert_read_only(resp, method: str) -> None:
    assert resp.status_code == 405, resp.data
    assert resp.content_type == "application/json"
    error = resp.get_json()["errors"][0]
    assert error["code"] == "UNSUPPORTED"
    assert READ_ONLY in error["message"]
    assert error["detail"] == {"method": method, "readonly": True}
    assert not {"POST", "PUT", "PATCH", "DELETE"} & set(resp.headers["Allow"].split(", "))


def test_every_write_is_refused_and_reads_keep_working(app, client, content):
    live, restart = reload_config(app, switched(app, True))
    assert live == ["storage.maintenance.readonly.enabled"] and restart == []
    layer = b"new layer"
    writes = [
        ("POST", "/v2/ro/app/blobs/uploads/", {}),
        ("POST", f"/v2/ro/app/blobs/uploads/?digest={digest_of(layer)}", {"data": layer}),
        ("POST", f"/v2/ro/other/blobs/uploads/?mount={content['blob']}&from=ro/app", {}),
        ("PATCH", content["upload"], {"data": layer}),
        ("PUT", f"{content['upload']}?digest={digest_of(layer)}", {"data": layer}),
        ("DELETE", content["upload"], {}),
        ("PUT", "/v2/ro/app/manifests/v2", {"data": content["raw"], "content_type": OCI_MANIFEST}),
        ("DELETE", "/v2/ro/app/manifests/v1", {}),
        ("DELETE", f"/v2/ro/app/manifests/{content['manifest']}", {}),
        ("DELETE", f"/v2/ro/app/blobs/{content['blob']}", {}),
    ]
    for method, path, kwargs in writes:
        assert_read_only(client.open(path, method=method, **kwargs), method)
    # Manifest routes still offer GET and HEAD; starting an upload has no read.
    assert client.put("/v2/ro/app/manifests/v1").headers["Allow"] == "GET, HEAD, OPTIONS"
    assert client.post("/v2/ro/app/blobs/uploads/").headers["Allow"] == "OPTIONS"

    resp = client.get("/v2/ro/app/manifests/v1", headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200 and resp.data == content["raw"]
    assert client.head(f"/v2/ro/app/manifests/{content['manifest']}").status_code == 200
    assert client.get(f"/v2/ro/app/blobs/{content['blob']}").data == b"lone blob"
    assert client.get("/v2/ro/app/tags/list").get_json()["tags"] == ["v1"]
    assert client.get("/v2/_catalog").get_json()["repositories"] == ["ro/app"]
    assert client.get(content["upload"]).status_code == 204  # the session survived the refused cancel
    assert client.get(f"/v2/ro/app/referrers/{content['manifest']}").status_code == 200
    assert client.get("/v2/").status_code == 200

    reload_config(app, switched(app, False))
    assert client.delete(f"/v2/ro/app/blobs/{content['blob']}").status_code == 202
    push_image(client, "ro/app", "v2", layer=b"after")


def test_read_only_from_the_start(make_app):
    app = make_app({"storage": {"inmemory": {}, "maintenance": {"readonly": {"enabled": True}}}})
    client = app.test_client()
    assert_read_only(client.post("/v2/ro/app/blobs/uploads/"), "POST")
    assert error_code(client.get("/v2/ro/app/tags/list")) == "NAME_UNKNOWN"


def test_reload_reports_live_keys_and_those_needing_a_restart(app, caplog):
    caplog.set_level(logging.INFO, "cargohold")
    assert reload_config(app, switched(app, False)) == ([], [])
    new = switched(app, True)
    new["log"]["level"] = "debug"
    new["http"]["draintimeout"] = 5.0
    new["storage"]["delete"]["enabled"] = False
    live, restart = reload_config(app, new)
    assert live == ["log.level", "storage.maintenance.readonly.enabled"]
    assert restart == ["http.draintimeout", "storage.delete.enabled"]
    assert logging.getLogger("cargohold").level == logging.DEBUG
    assert "configuration reloaded: read-only mode on; applied: log.level, storage.maintenance" in caplog.text
    assert "changes to http.draintimeout, storage.delete.enabled take effect only after a restart" in caplog.text
    # Keys needing a restart keep their running values (deletes stay enabled).
    assert app.config["CARGOHOLD"]["storage"]["delete"]["enabled"] is True
    assert app.config["CARGOHOLD"]["http"]["draintimeout"] == 30.0
    new["log"]["level"] = "info"
    reload_config(app, new)


def test_a_changed_auth_section_builds_a_new_provider(app, client, tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    locked = switched(app, False, auth={"htpasswd": {"realm": "r", "path": htpasswd}})
    live, _ = reload_config(app, locked)
    assert live == ["auth.htpasswd"]
    assert app.extensions["cargohold"].auth_name == "htpasswd"
    assert client.get("/v2/").status_code == 401
    assert client.get("/v2/", headers=basic("alice", "secret")).status_code == 200

    # A provider that cannot be built: nothing of the reload is applied.
    broken = switched(app, True, auth={"htpasswd": {"realm": "r", "path": str(tmp_path / "missing")}})
    with pytest.raises(ConfigError, match="auth.htpasswd"):
        reload_config(app, broken)
    assert app.config["CARGOHOLD"]["storage"]["maintenance"]["readonly"]["enabled"] is False
    assert client.get("/v2/", headers=basic("alice", "secret")).status_code == 200

    reload_config(app, switched(app, False, auth={}))
    assert app.extensions["cargohold"].auth_name == "none"
    assert client.get("/v2/").status_code == 200


def test_authentication_comes_first(make_app, tmp_path):
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"alice": "secret"})
    app = make_app({"storage": {"inmemory": {}, "maintenance": {"readonly": {"enabled": True}}},
                    "auth": {"htpasswd": {"realm": "r", "path": htpasswd}}})
    client = app.test_client()
    assert error_code(client.post("/v2/ro/app/blobs/uploads/")) == "UNAUTHORIZED"
    assert_read_only(client.post("/v2/ro/app/blobs/uploads/", headers=basic("alice", "secret")), "POST")
