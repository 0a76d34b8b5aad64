"""Only verified bytes become blobs; uploads survive moving between app
instances; names, digests, tags and upload ids never escape the storage root."""

from __future__ import annotations

import os

import pytest

from cargohold.errors import NotFound
from cargohold.storage import paths

from .helpers import (OCI_MANIFEST, blob_stored, digest_of, error_code, image_manifest, push_blob, put_manifest,
                      upload_sessions)


# -- digest verification -------------------------------------------------------------


def test_monolithic_upload_with_wrong_digest_leaves_nothing(client, state):
    claimed = digest_of(b"what the client says")
    resp = client.post(f"/v2/app/blobs/uploads/?digest={claimed}", data=b"what it sends")
    assert resp.status_code == 400 and error_code(resp) == "DIGEST_INVALID"
    assert client.head(f"/v2/app/blobs/{claimed}").status_code == 404
    assert client.head(f"/v2/app/blobs/{digest_of(b'what it sends')}").status_code == 404
    assert not blob_stored(state, claimed) and not blob_stored(state, digest_of(b"what it sends"))
    assert upload_sessions(state, "app") == []


def test_chunked_upload_with_wrong_digest_ends_the_session(client, state):
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, data=b"chunk-one").status_code == 202
    assert client.patch(location, data=b"chunk-two", headers={"Content-Range": "9-17"}).status_code == 202
    claimed = digest_of(b"chunk-one")
    resp = client.put(f"{location}?digest={claimed}")
    assert resp.status_code == 400 and error_code(resp) == "DIGEST_INVALID"
    assert client.head(f"/v2/app/blobs/{claimed}").status_code == 404
    assert not blob_stored(state, claimed) and not blob_stored(state, digest_of(b"chunk-onechunk-two"))
    assert upload_sessions(state, "app") == []
    assert client.get(location).status_code == 404


def test_wrong_bytes_for_a_digest_stored_elsewhere_are_not_linked(client, state):
    genuine = b"genuine layer"
    digest = push_blob(client, "victim", genuine)
    resp = client.post(f"/v2/attacker/blobs/uploads/?digest={digest}", data=b"malicious layer")
    assert resp.status_code == 400 and error_code(resp) == "DIGEST_INVALID"
    assert client.head(f"/v2/attacker/blobs/{digest}").status_code == 404
    assert client.get(f"/v2/victim/blobs/{digest}").data == genuine


def test_finish_with_another_algorithm_rehashes(client):
    data = b"hashed twice"
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, data=data).status_code == 202
    sha512 = digest_of(data, "sha512")
    resp = client.put(f"{location}?digest={sha512}")
    assert resp.status_code == 201 and resp.headers["Docker-Content-Digest"] == sha512
    assert client.get(f"/v2/app/blobs/{sha512}").data == data


def test_short_chunk_is_rolled_back(client):
    location = client.post("/v2/app/blobs/uploads/").headers["Location"]
    assert client.patch(location, data=b"12345").status_code == 202
    # The body ends before the announced length (a client that went away).
    resp = client.patch(location, data=b"678", environ_overrides={"CONTENT_LENGTH": "10"})
    assert resp.status_code in (400, 416)
    assert client.get(location).headers["Range"] == "0-4"
    assert client.patch(location, data=b"678", headers={"Content-Range": "5-7"}).status_code == 202
    assert client.put(f"{location}?digest={digest_of(b'12345678')}").status_code == 201


# -- two app instances on one filesystem ----------------------------------------------


@pytest.fixture
def fs_apps(make_app, tmp_path):
    config = {"storage": {"filesystem": {"rootdirectory": str(tmp_path / "root")}, "delete": {"enabled": True}}}
    first, second = make_app(config), make_app(config)
    return first.test_client(), second.test_client()


def _two_chunks(a, b, one: bytes, two: bytes) -> str:
    location = a.post("/v2/app/blobs/uploads/").headers["Location"]
    resp = a.patch(location, data=one, headers={"Content-Range": f"0-{len(one) - 1}"})
    assert resp.status_code == 202
    resp = b.patch(location, data=two, headers={"Content-Range": f"{len(one)}-{len(one) + len(two) - 1}"})
    assert resp.status_code == 202, resp.data
    return location


def test_chunks_on_two_instances_are_verified_from_storage(fs_apps):
    a, b = fs_apps
    location = _two_chunks(a, b, b"first half|", b"second half")
    digest = digest_of(b"first half|second half")
    resp = a.put(f"{location}?digest={digest}")
    assert resp.status_code == 201, resp.data
    for client in (a, b):
        assert client.get(f"/v2/app/blobs/{digest}").data == b"first half|second half"


def test_stale_hash_on_the_first_instance_is_not_trusted(fs_apps):
    a, b = fs_apps
    location = _two_chunks(a, b, b"first half|", b"second half")
    # The first instance hashed only its own chunk; that digest must not pass.
    stale = digest_of(b"first half|")
    resp = a.put(f"{location}?digest={stale}")
    assert resp.status_code == 400 and error_code(resp) == "DIGEST_INVALID"
    for client in (a, b):
        assert client.head(f"/v2/app/blobs/{stale}").status_code == 404
        assert client.head(f"/v2/app/blobs/{digest_of(b'first half|second half')}").status_code == 404


def test_last_chunk_with_the_put_after_another_instance(fs_apps):
    a, b = fs_apps
    location = _two_chunks(a, b, b"one,", b"two,")
    digest = digest_of(b"one,two,three")
    resp = a.put(f"{location}?digest={digest}", data=b"three", headers={"Content-Range": "8-12"})
    assert resp.status_code == 201, resp.data
    assert b.get(f"/v2/app/blobs/{digest}").data == b"one,two,three"


# -- path traversal ------------------------------------------------------------------

UUID = "0d0a7a43-5e8c-4a4e-9e1c-6a6e1d1b7c5e"
EVIL_DIGEST = "sha256:" + "../" * 20 + "outside"[:4]

TRAVERSALS = [
    ("GET", "/v2/../../outside/tags/list", {}, 400, "NAME_INVALID"),
    ("GET", "/v2/%2e%2e/%2e%2e/outside/tags/list", {}, 400, "NAME_INVALID"),
    ("GET", "/v2/app/%2e%2e/%2e%2e/%2e%2e/outside/tags/list", {}, 400, "NAME_INVALID"),
    ("GET", "/v2/app/%2E%2E/outside/tags/list", {}, 400, "NAME_INVALID"),
    ("PUT", "/v2/..%2f..%2foutside/manifests/latest", {"data": b"{}"}, 400, "NAME_INVALID"),
    ("POST", "/v2/../outside/blobs/uploads/", {}, 400, "NAME_INVALID"),
    ("POST", "/v2/app/..%5c..%5coutside/blobs/uploads/", {}, 400, "NAME_INVALID"),
    ("POST", "/v2/app%00/blobs/uploads/", {}, 400, "NAME_INVALID"),
    ("GET", "/v2/app/blobs/..", {}, 400, "DIGEST_INVALID"),
    ("GET", "/v2/app/blobs/sha256:..", {}, 400, "DIGEST_INVALID"),
    ("GET", "/v2/app/blobs/sha256:..%2f..%2f..%2foutside", {}, 404, NotFound.code),
    ("GET", "/v2/app/manifests/..", {}, 404, "MANIFEST_UNKNOWN"),
    ("DELETE", "/v2/app/manifests/%2e%2e", {}, 404, "MANIFEST_UNKNOWN"),
    ("GET", "/v2/app/referrers/sha256:..", {}, 400, "DIGEST_INVALID"),
    ("PUT", "/v2/app/manifests/v1?tag=../../evil", {"data": b"{}"}, 400, "TAG_INVALID"),
    ("PATCH", "/v2/app/blobs/uploads/..", {"data": b"x"}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/app/blobs/uploads/%2e%2e", {"data": b"x"}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/app/blobs/uploads/" + "." * 36, {"data": b"x"}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PATCH", "/v2/app/blobs/uploads/" + ".." + "a" * 34, {"data": b"x"}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PUT", "/v2/app/blobs/uploads/..%2f..%2f..%2f..%2foutside", {}, 404, NotFound.code),
    ("DELETE", "/v2/app/blobs/uploads/" + "%2e" * 36, {}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("GET", "/v2/app/blobs/uploads/aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaa~~", {}, 404, "BLOB_UPLOAD_UNKNOWN"),
    ("PUT", f"/v2/app/blobs/uploads/{UUID}?digest={EVIL_DIGEST}", {}, 400, "DIGEST_INVALID"),
    ("POST", f"/v2/app/blobs/uploads/?digest={EVIL_DIGEST}", {"data": b"x"}, 400, "DIGEST_INVALID"),
    ("POST", "/v2/app/blobs/uploads/?digest-algorithm=../../x", {}, 400, "DIGEST_INVALID"),
    ("POST", f"/v2/app/blobs/uploads/?mount={EVIL_DIGEST}&from=app2", {}, 400, "DIGEST_INVALID"),
    ("POST", f"/v2/app/blobs/uploads/?mount={digest_of(b'x')}&from=../../outside", {}, 400, "NAME_INVALID"),
    ("POST", f"/v2/app/blobs/uploads/?mount={digest_of(b'x')}&from=/outside", {}, 400, "NAME_INVALID"),
]


def _files(top: str, skip: str) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath.startswith(skip):
            continue
        out.update(os.path.join(dirpath, f) for f in filenames)
        out.update(os.path.join(dirpath, d) for d in dirnames if not os.path.join(dirpath, d).startswith(skip))
    return out


@pytest.fixture
def fs_client(make_app, tmp_path):
    root = tmp_path / "data" / "root"
    (tmp_path / "data" / "outside").mkdir(parents=True)
    (tmp_path / "data" / "outside" / "keep").write_bytes(b"keep")
    app = make_app({"storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}}})
    client = app.test_client()
    push_blob(client, "app", b"seed")
    before = _files(str(tmp_path), str(root))
    yield client
    assert _files(str(tmp_path), str(root)) == before
    assert (tmp_path / "data" / "outside" / "keep").read_bytes() == b"keep"
    for dirpath, _, filenames in os.walk(root):
        assert ".." not in os.path.relpath(dirpath, root).split(os.sep)


@pytest.mark.parametrize("method,path,kw,status,code", TRAVERSALS, ids=[f"{m} {p}" for m, p, *_ in TRAVERSALS])
def test_traversal_is_rejected(fs_client, method, path, kw, status, code):
    resp = fs_client.open(path, method=method, **kw)
    assert (resp.status_code, error_code(resp)) == (status, code)


@pytest.mark.parametrize("path", ["/v2//outside/tags/list", "/v2/%2foutside/tags/list", "/v2///outside/blobs/uploads/"])
def test_absolute_names_are_rejected(fs_client, path):
    method = "POST" if "uploads" in path else "GET"
    resp = fs_client.open(path, method=method)
    assert resp.status_code in (400, 404), (resp.status_code, resp.headers.get("Location"))
    assert error_code(resp) in ("NAME_INVALID", "NAME_UNKNOWN", NotFound.code)


def test_traversal_in_a_manifest_tag_list_push(fs_client):
    raw = image_manifest(fs_client, "app")
    resp = put_manifest(fs_client, "app", digest_of(raw), raw, OCI_MANIFEST,
                        query_string=[("tag", "ok"), ("tag", "..")])
    assert resp.status_code == 400 and error_code(resp) == "TAG_INVALID"
    assert fs_client.get("/v2/app/tags/list").get_json()["tags"] == []


# -- purging abandoned uploads ---------------------------------------------------------


def test_purge_removes_old_sessions_and_keeps_fresh_ones(client, state):
    locations = [client.post(f"/v2/{name}/blobs/uploads/").headers["Location"] for name in ("a", "b/c")]
    assert client.patch(locations[0], data=b"partial").status_code == 202
    uploads = state.registry.uploads

    assert uploads.purge(3600) == []
    assert uploads.purge(0, dry_run=True) and all(client.get(loc).status_code == 204 for loc in locations)
    assert all(client.get(loc).status_code == 204 for loc in locations)

    purged = uploads.purge(older_than=0)
    assert sorted(purged) == sorted(paths.upload_dir(n, loc.rpartition("/")[2])
                                    for n, loc in zip(("a", "b/c"), locations))
    for loc in locations:
        resp = client.get(loc)
        assert resp.status_code == 404 and error_code(resp) == "BLOB_UPLOAD_UNKNOWN"
    assert upload_sessions(state, "a") == [] and upload_sessions(state, "b/c") == []


def test_purge_leaves_blobs_and_manifests(client, state):
    digest = push_blob(client, "app", b"kept")
    client.post("/v2/app/blobs/uploads/")
    assert len(state.registry.uploads.purge(0)) == 1
    assert client.get(f"/v2/app/blobs/{digest}").data == b"kept"
