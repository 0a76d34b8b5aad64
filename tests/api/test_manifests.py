"""Manifest pull negotiation, push rules, tags and referrers, deletes."""

from __future__ import annotations

import json

import pytest

from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound

from .conftest import BASE_CONFIG
from .helpers import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    push_image,
    put_manifest,
)

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


# -- Accept negotiation ----------------------------------------------------------------


@pytest.mark.parametrize("stored", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_no_accept_header_returns_the_stored_type(client, stored):
    digest, raw = push_image(client, "app", "v1", media_type=stored)
    resp = client.get("/v2/app/manifests/v1")
    assert resp.status_code == 200
    assert resp.content_type == stored
    assert resp.data == raw
    assert resp.headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize("accept", [
    "*/*",
    OCI_MANIFEST,
    f"{DOCKER_MANIFEST}, {OCI_MANIFEST}",
    f"{OCI_INDEX};q=0.9, {OCI_MANIFEST};q=0.5",
    f"{DOCKER_MANIFEST}, */*;q=0.1",
    OCI_MANIFEST.upper(),
])
def test_accept_listing_the_stored_type_or_wildcard(client, accept):
    digest, raw = push_image(client, "app", "v1")
    for ref in ("v1", digest):
        resp = client.get(f"/v2/app/manifests/{ref}", headers={"Accept": accept})
        assert resp.status_code == 200, accept
        assert resp.content_type == OCI_MANIFEST and resp.data == raw


@pytest.mark.parametrize("accept", [DOCKER_MANIFEST, f"{DOCKER_MANIFEST}, {DOCKER_LIST}", OCI_INDEX])
def test_accept_without_the_stored_type_is_manifest_unknown(client, accept):
    push_image(client, "app", "v1")
    for method in ("GET", "HEAD"):
        resp = client.open("/v2/app/manifests/v1", method=method, headers={"Accept": accept})
        assert resp.status_code == 404
    assert error_code(client.get("/v2/app/manifests/v1", headers={"Accept": accept})) == "MANIFEST_UNKNOWN"


def test_head_matches_get(client):
    digest, raw = push_image(client, "app", "v1")
    resp = client.head("/v2/app/manifests/v1")
    assert resp.status_code == 200 and resp.data == b""
    assert resp.headers["Content-Length"] == str(len(raw))
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.content_type == OCI_MANIFEST


def test_manifest_without_media_type_is_served_as_inferred_oci_type(client):
    raw = image_manifest(client, "app")
    doc = json.loads(raw)
    del doc["mediaType"]
    raw = json.dumps(doc).encode()
    assert put_manifest(client, "app", "v1", raw, "application/json").status_code == 201
    resp = client.get("/v2/app/manifests/v1")
    assert resp.content_type == OCI_MANIFEST and resp.data == raw


# -- references -------------------------------------------------------------------------


def _index(children: list[tuple[str, bytes]], media_type: str = OCI_INDEX) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(r),
                       "platform": {"architecture": "amd64", "os": "linux"}} for d, r in children],
    }).encode()


def test_index_with_missing_child_is_rejected(client):
    child = push_image(client, "app", None)
    missing = digest_of(b"never pushed")
    raw = _index([child, (missing, b"x" * 10)])
    resp = put_manifest(client, "app", "multi", raw, OCI_INDEX)
    assert resp.status_code == 400
    [error] = resp.get_json()["errors"]
    assert error["code"] == "MANIFEST_BLOB_UNKNOWN" and error["detail"] == {"digest": missing}
    assert client.get("/v2/app/manifests/multi").status_code == 404


def test_index_child_must_be_in_the_same_repository(client):
    child = push_image(client, "elsewhere", None)
    resp = put_manifest(client, "app", "multi", _index([child]), OCI_INDEX)
    assert resp.status_code == 400 and error_code(resp) == "MANIFEST_BLOB_UNKNOWN"


def test_index_with_present_children_is_stored(client):
    children = [push_image(client, "app", None, layer=b"amd64"), push_image(client, "app", None, layer=b"arm64")]
    raw = _index(children)
    resp = put_manifest(client, "app", "multi", raw, OCI_INDEX)
    assert resp.status_code == 201
    got = client.get("/v2/app/manifests/multi", headers={"Accept": OCI_INDEX})
    assert got.content_type == OCI_INDEX and got.data == raw


def test_image_with_missing_layer_names_it(client):
    raw = json.loads(image_manifest(client, "app"))
    missing = digest_of(b"missing layer")
    raw["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": missing, "size": 13})
    resp = put_manifest(client, "app", "v1", json.dumps(raw).encode())
    assert resp.status_code == 400
    assert resp.get_json()["errors"][0]["detail"] == {"digest": missing}


# -- size limit ---------------------------------------------------------------------------


@pytest.fixture
def small_limit(make_app):
    app = make_app({**BASE_CONFIG, "validation": {"manifests": {"maxsize": 600}}})
    return app.test_client()


def test_manifest_over_the_limit_is_413(small_limit):
    raw = image_manifest(small_limit, "app", annotations={"pad": "x" * 600})
    assert len(raw) > 600
    resp = put_manifest(small_limit, "app", "v1", raw)
    assert resp.status_code == 413 and error_code(resp) == "SIZE_INVALID"
    assert small_limit.get("/v2/app/manifests/v1").status_code == 404


def test_manifest_over_the_limit_without_content_length_is_413(small_limit):
    raw = image_manifest(small_limit, "app", annotations={"pad": "x" * 600})
    # A body without Content-Length (as with chunked transfer encoding).
    streamed = {"CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    resp = small_limit.put("/v2/app/manifests/v1", data=raw, content_type=OCI_MANIFEST, environ_overrides=streamed)
    assert resp.status_code == 413 and error_code(resp) == "SIZE_INVALID"
    assert not resp.request.headers.get("Content-Length")
    small = image_manifest(small_limit, "app")
    resp = small_limit.put("/v2/app/manifests/v1", data=small, content_type=OCI_MANIFEST, environ_overrides=streamed)
    assert resp.status_code == 201
    assert small_limit.get("/v2/app/manifests/v1").data == small


def test_manifest_at_the_limit_is_accepted(small_limit):
    raw = image_manifest(small_limit, "app")
    doc = json.loads(raw)
    doc["annotations"] = {"pad": ""}
    base = len(json.dumps(doc).encode())
    doc["annotations"]["pad"] = "x" * (600 - base)
    raw = json.dumps(doc).encode()
    assert len(raw) == 600
    assert put_manifest(small_limit, "app", "v1", raw).status_code == 201


# -- tags on push ---------------------------------------------------------------------------


def test_push_by_digest_with_tag_query(client):
    raw = image_manifest(client, "app")
    digest = digest_of(raw)
    resp = put_manifest(client, "app", digest, raw, query_string=[("tag", "v1"), ("tag", "stable")])
    assert resp.status_code == 201
    assert resp.headers.getlist("OCI-Tag") == ["v1", "stable"]
    assert resp.headers["Location"] == f"/v2/app/manifests/{digest}"
    assert client.get("/v2/app/tags/list").get_json() == {"name": "app", "tags": ["stable", "v1"]}
    for tag in ("v1", "stable"):
        assert client.get(f"/v2/app/manifests/{tag}").headers["Docker-Content-Digest"] == digest


def test_push_by_digest_without_tags_creates_none(client):
    digest, _ = push_image(client, "app", None)
    assert client.get("/v2/app/tags/list").get_json()["tags"] == []
    assert client.get(f"/v2/app/manifests/{digest}").status_code == 200


def test_retag_moves_the_tag(client):
    first, _ = push_image(client, "app", "latest", layer=b"one")
    second, _ = push_image(client, "app", "latest", layer=b"two")
    assert first != second
    assert client.get("/v2/app/manifests/latest").headers["Docker-Content-Digest"] == second
    assert client.get(f"/v2/app/manifests/{first}").status_code == 200


# -- referrers and delete ---------------------------------------------------------------------


def _referrer(client, subject: str, subject_raw: bytes, artifact_type: str) -> tuple[str, bytes]:
    return push_image(client, "app", None, layer=artifact_type.encode(), artifactType=artifact_type,
                      subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_raw)})


def test_subject_push_is_listed_in_referrers(client):
    subject, subject_raw = push_image(client, "app", "v1")
    raw = image_manifest(client, "app", layer=b"sig", artifactType="application/x-sig",
                         subject={"mediaType": OCI_MANIFEST, "digest": subject, "size": len(subject_raw)})
    resp = put_manifest(client, "app", digest_of(raw), raw)
    assert resp.status_code == 201 and resp.headers["OCI-Subject"] == subject
    _referrer(client, subject, subject_raw, "application/x-sbom")

    index = client.get(f"/v2/app/referrers/{subject}")
    assert index.content_type == OCI_INDEX
    types = sorted(m["artifactType"] for m in index.get_json()["manifests"])
    assert types == ["application/x-sbom", "application/x-sig"]
    filtered = client.get(f"/v2/app/referrers/{subject}?artifactType=application/x-sig")
    assert [m["digest"] for m in filtered.get_json()["manifests"]] == [digest_of(raw)]
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"


def test_delete_manifest_removes_its_tags_and_referrer_entry(client, state):
    subject, subject_raw = push_image(client, "app", "v1")
    ref, ref_raw = _referrer(client, subject, subject_raw, "application/x-sig")
    assert put_manifest(client, "app", "sig", ref_raw).status_code == 201
    other, _ = push_image(client, "app", "other", layer=b"unrelated")
    assert client.get("/v2/app/tags/list").get_json()["tags"] == ["other", "sig", "v1"]

    assert client.delete(f"/v2/app/manifests/{ref}").status_code == 202
    assert client.get(f"/v2/app/referrers/{subject}").get_json()["manifests"] == []
    assert client.get("/v2/app/tags/list").get_json()["tags"] == ["other", "v1"]
    assert client.get(f"/v2/app/manifests/{ref}").status_code == 404
    with pytest.raises(PathNotFound):
        state.driver.stat(paths.referrers_dir("app", subject))

    assert client.delete(f"/v2/app/manifests/{subject}").status_code == 202
    assert client.get("/v2/app/tags/list").get_json()["tags"] == ["other"]
    resp = client.get("/v2/app/manifests/v1")
    assert resp.status_code == 404 and error_code(resp) == "MANIFEST_UNKNOWN"
    assert client.get(f"/v2/app/manifests/{other}").status_code == 200


def test_delete_by_tag_keeps_the_manifest(client):
    digest, _ = push_image(client, "app", "v1")
    assert client.delete("/v2/app/manifests/v1").status_code == 202
    assert client.get("/v2/app/manifests/v1").status_code == 404
    assert client.get(f"/v2/app/manifests/{digest}").status_code == 200


@pytest.fixture
def no_deletes(make_app):
    return make_app({"storage": {"inmemory": {}}}).test_client()


def test_deletes_disabled_is_405_unsupported(no_deletes):
    client = no_deletes
    digest, _ = push_image(client, "app", "v1", layer=b"layer")
    layer = digest_of(b"layer")
    for path in (f"/v2/app/manifests/{digest}", "/v2/app/manifests/v1", f"/v2/app/blobs/{layer}"):
        resp = client.delete(path)
        assert resp.status_code == 405 and error_code(resp) == "UNSUPPORTED", path
    assert client.get("/v2/app/manifests/v1").headers["Docker-Content-Digest"] == digest
    assert client.get(f"/v2/app/blobs/{layer}").data == b"layer"


def test_http_prefix_serves_the_api_below_it_and_keeps_it_in_locations(make_app):
    client = make_app({**BASE_CONFIG, "http": {"prefix": "/registry/"}}).test_client()
    assert client.get("/registry/v2/").status_code == 200
    resp = client.get("/v2/")
    assert resp.status_code == 404 and resp.json["errors"][0]["code"] == "UNSUPPORTED"
    resp = client.post("/registry/v2/app/blobs/uploads/")
    assert resp.status_code == 202
    assert resp.headers["Location"].startswith("/registry/v2/app/blobs/uploads/")
