"""Pull: manifests and blobs by GET and HEAD, ranges, names and digests."""

from __future__ import annotations

import uuid

import pytest

from .helpers import (OCI_MANIFEST, assert_error, digest_of, head_wire_body, random_bytes,
                      raw_request, unique_repo)


@pytest.fixture()
def image(client, repo):
    return client.push_image(repo, "v1", layers=2)


# -- manifests -------------------------------------------------------------


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_get_manifest(client, image, by):
    ref = "v1" if by == "tag" else image.digest
    resp = client.get_manifest(image.repo, ref)
    assert resp.status_code == 200
    # OCI "Pulling manifests": Content-Type is the manifest's type, without
    # parameters; the body is the manifest byte for byte.
    assert resp.headers["Content-Type"] == OCI_MANIFEST
    assert resp.content == image.body
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert int(resp.headers["Content-Length"]) == image.size


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_manifest(client, image, by):
    ref = "v1" if by == "tag" else image.digest
    resp = client.get_manifest(image.repo, ref, method="HEAD")
    assert resp.status_code == 200
    # OCI "Checking if content exists": Docker-Content-Digest and
    # Content-Length (the size of the stored object) on a HEAD.
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert int(resp.headers["Content-Length"]) == image.size
    assert resp.headers["Content-Type"] == OCI_MANIFEST


def test_head_manifest_sends_no_body(client, image):
    status, rest = head_wire_body(client.base, f"/v2/{image.repo}/manifests/v1",
                                  {"Accept": OCI_MANIFEST})
    assert status == 200
    assert rest == b""


def test_unknown_query_parameters_are_ignored(client, image):
    resp = client.get(f"/v2/{image.repo}/manifests/v1", params={"foo": "bar"},
                      headers={"Accept": OCI_MANIFEST})
    assert resp.status_code == 200 and resp.content == image.body
    dig = digest_of(image.layers[0])
    resp = client.get(f"/v2/{image.repo}/blobs/{dig}", params={"foo": "bar"})
    assert resp.status_code == 200 and resp.content == image.layers[0]


def test_unknown_manifest(client, image):
    resp = client.get_manifest(image.repo, "no-such-tag")
    assert_error(resp, 404, "MANIFEST_UNKNOWN")
    resp = client.get_manifest(image.repo, digest_of(b"no such manifest"))
    assert_error(resp, 404, "MANIFEST_UNKNOWN")
    resp = client.get_manifest(image.repo, "no-such-tag", method="HEAD")
    assert resp.status_code == 404


def test_manifest_in_unknown_repository(client):
    # Docker lists NAME_UNKNOWN for an unknown repository; the reference
    # implementation answers MANIFEST_UNKNOWN.  Both are 404.
    resp = client.get_manifest(unique_repo(), "latest")
    assert_error(resp, 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))


def test_manifest_is_scoped_to_its_repository(client, image):
    resp = client.get_manifest(unique_repo(), image.digest)
    assert_error(resp, 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))


# -- blobs -----------------------------------------------------------------


def test_get_blob(client, image):
    layer = image.layers[0]
    dig = digest_of(layer)
    resp = client.get(f"/v2/{image.repo}/blobs/{dig}")
    assert resp.status_code == 200
    assert resp.content == layer
    assert resp.headers["Docker-Content-Digest"] == dig
    assert int(resp.headers["Content-Length"]) == len(layer)


def test_head_blob(client, image):
    layer = image.layers[1]
    dig = digest_of(layer)
    resp = client.head(f"/v2/{image.repo}/blobs/{dig}")
    assert resp.status_code == 200
    assert resp.headers["Docker-Content-Digest"] == dig
    assert int(resp.headers["Content-Length"]) == len(layer)
    status, rest = head_wire_body(client.base, f"/v2/{image.repo}/blobs/{dig}")
    assert (status, rest) == (200, b"")


def test_unknown_blob(client, image):
    dig = digest_of(b"never pushed")
    assert_error(client.get(f"/v2/{image.repo}/blobs/{dig}"), 404, "BLOB_UNKNOWN")
    assert client.head(f"/v2/{image.repo}/blobs/{dig}").status_code == 404


def test_blob_in_unknown_repository(client):
    resp = client.get(f"/v2/{unique_repo()}/blobs/{digest_of(b'x')}")
    assert_error(resp, 404, ("NAME_UNKNOWN", "BLOB_UNKNOWN"))


def test_blob_is_scoped_to_its_repository(client, image):
    # A blob pushed to one repository is not pullable through another one
    # (OCI: "If the blob is not found in the repository ... 404").
    other = unique_repo()
    client.push_blob(other, b"something else")
    resp = client.get(f"/v2/{other}/blobs/{digest_of(image.layers[0])}")
    assert_error(resp, 404, "BLOB_UNKNOWN")


# -- ranges ----------------------------------------------------------------
# OCI "Pulling blobs": a registry SHOULD support Range (RFC 9110).  Docker
# "Fetch Blob Part": 206 with Content-Range "bytes <start>-<end>/<size>"; 416
# when the range cannot be satisfied.


@pytest.fixture()
def blob(client, repo):
    data = bytes(range(256)) * 4  # 1024 bytes
    return repo, data, client.push_blob(repo, data)


@pytest.mark.parametrize("spec,start,end", [("bytes=10-19", 10, 19), ("bytes=1000-", 1000, 1023),
                                            ("bytes=0-0", 0, 0), ("bytes=-24", 1000, 1023),
                                            ("bytes=1000-5000", 1000, 1023)])
def test_blob_range(client, blob, spec, start, end):
    repo, data, dig = blob
    resp = client.get(f"/v2/{repo}/blobs/{dig}", headers={"Range": spec})
    assert resp.status_code == 206, resp.text[:200]
    assert resp.content == data[start:end + 1]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
    assert int(resp.headers["Content-Length"]) == end - start + 1


@pytest.mark.parametrize("spec", ["bytes=1024-", "bytes=5000-6000"])
def test_blob_range_not_satisfiable(client, blob, spec):
    repo, data, dig = blob
    resp = client.get(f"/v2/{repo}/blobs/{dig}", headers={"Range": spec})
    assert resp.status_code == 416
    # RFC 9110 14.4: a 416 SHOULD carry "Content-Range: bytes */<size>".
    if "Content-Range" in resp.headers:
        assert resp.headers["Content-Range"] == f"bytes */{len(data)}"


@pytest.mark.parametrize("spec", ["bytes=abc", "items=0-5", "bytes=5-2"])
def test_blob_range_with_unusable_syntax(client, blob, spec):
    # RFC 9110 14.2: a server MAY ignore a Range it cannot use (200, whole
    # blob); Docker allows 416 for a badly formatted range.
    repo, data, dig = blob
    resp = client.get(f"/v2/{repo}/blobs/{dig}", headers={"Range": spec})
    assert resp.status_code in (200, 416), (resp.status_code, resp.text[:200])
    if resp.status_code == 200:
        assert resp.content == data


def test_blob_range_on_empty_blob(client, repo):
    empty = client.push_blob(repo, b"")
    resp = client.get(f"/v2/{repo}/blobs/{empty}", headers={"Range": "bytes=0-0"})
    assert resp.status_code in (200, 416), (resp.status_code, resp.text[:200])
    if resp.status_code == 200:
        assert resp.content == b""


def test_blob_range_on_unknown_blob_is_404(client, blob):
    repo, _, _ = blob
    resp = client.get(f"/v2/{repo}/blobs/{digest_of(b'nope')}", headers={"Range": "bytes=0-1"})
    assert_error(resp, 404, "BLOB_UNKNOWN")


# -- names and digests -----------------------------------------------------
# OCI: <name> MUST match
#   [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
# Docker: NAME_INVALID (400) for an invalid name in any API operation, and a
# name (with slashes) of 256 characters or more is invalid.

INVALID_NAMES = [
    "Conf/upper",
    "conf/UPPER",
    "conf/a..b",
    "conf/-leading",
    "conf/trailing-",
    "conf/trailing.",
    "conf/a___b",
    "conf/_under",
    "conf/a b",
    "conf/" + "a" * 251,  # 256 characters
]


@pytest.mark.parametrize("name", INVALID_NAMES, ids=lambda n: n if len(n) < 40 else f"len{len(n)}")
def test_invalid_name_on_manifest_get(client, name):
    resp = client.get_manifest(name, "latest")
    assert_error(resp, 400, "NAME_INVALID")


@pytest.mark.parametrize("name", ["conf/Upper", "conf/a..b", "conf/-x"])
def test_invalid_name_on_blob_and_upload_routes(client, name):
    assert_error(client.get(f"/v2/{name}/blobs/{digest_of(b'x')}"), 400, "NAME_INVALID")
    assert_error(client.start_upload(name), 400, "NAME_INVALID")
    assert_error(client.get(f"/v2/{name}/tags/list"), 400, "NAME_INVALID")


@pytest.mark.parametrize("path", [
    "/v2/conf/x//manifests/latest",       # empty component (a trailing slash on "conf/x/")
    "/v2/conf/x/../y/manifests/latest",   # dot-dot component, sent unnormalised
    "/v2/conf/./y/manifests/latest",
])
def test_malformed_name_paths(client, path):
    # These never name a repository: either the name is rejected (400
    # NAME_INVALID) or no route matches (404).  A redirect to a different
    # repository, or a success, is wrong.
    status, headers, body = raw_request(client.base, "GET", path, {"Accept": OCI_MANIFEST})
    assert status in (400, 404), (status, body[:200])
    assert headers.get("content-type", "").startswith("application/json"), headers
    if status == 400:
        assert b"NAME_INVALID" in body


@pytest.mark.parametrize("component", ["a__b", "a--b", "a---b", "a.b", "a_b", "a-b.c_d", "0"])
def test_valid_unusual_names_are_accepted(client, component):
    name = f"conf/{uuid.uuid4().hex[:12]}/{component}"
    pushed = client.push_image(name, "v1", layers=1)
    resp = client.get_manifest(name, "v1")
    assert resp.status_code == 200 and resp.content == pushed.body


def test_name_of_255_characters_is_valid(client):
    name = f"conf/{uuid.uuid4().hex[:12]}/"
    name += "n" * (255 - len(name))
    assert len(name) == 255
    resp = client.get_manifest(name, "latest")
    assert_error(resp, 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))


@pytest.mark.parametrize("dig", ["sha256:abc", "sha256:" + "g" * 64, "not-a-digest", "sha256:",
                                 ":" + "a" * 64])
def test_invalid_digest_in_blob_url(client, repo, dig):
    client.push_blob(repo, b"make the repository exist")
    assert_error(client.get(f"/v2/{repo}/blobs/{dig}"), 400, "DIGEST_INVALID")


# References that are neither a tag nor a digest this registry stores; the
# first is what the OCI conformance suite (v1.1.1) asks for as its
# "nonexistent manifest".
IMPOSSIBLE_REFERENCES = [
    ".INVALID_MANIFEST_NAME",
    "-leading-dash",
    "x" * 129,
    "has+plus",
    "sha256:" + "z" * 64,
    "sha256:abc",
    "sha256:",
    "md5:" + "a" * 32,
    "not:a:digest",
]


@pytest.mark.parametrize("ref", IMPOSSIBLE_REFERENCES, ids=lambda r: r if len(r) < 40 else f"len{len(r)}")
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_reference_that_cannot_exist_is_unknown(client, image, method, ref):
    # A reference that cannot name any manifest is certainly not found: 404
    # MANIFEST_UNKNOWN, as for any missing manifest (conformance: "GET/HEAD
    # nonexistent manifest should return 404").
    resp = client.get_manifest(image.repo, ref, method=method)
    assert_error(resp, 404, "MANIFEST_UNKNOWN")


def test_pushing_to_an_impossible_tag_is_still_tag_invalid(client, image):
    # Only reads (and deletes) treat it as unknown: a PUT asks for the name
    # to be assigned, and that name is not a tag.
    resp = client.put_manifest(image.repo, ".INVALID_MANIFEST_NAME", image.body, OCI_MANIFEST)
    assert_error(resp, 400, "TAG_INVALID")


def test_blob_fetch_by_uncommon_but_valid_algorithm(client, repo):
    data = random_bytes(300)
    dig = client.push_blob(repo, data, alg="sha512")
    resp = client.get(f"/v2/{repo}/blobs/{dig}")
    assert resp.status_code == 200
    assert resp.content == data
    assert resp.headers["Docker-Content-Digest"] == dig
