"""The version check endpoint, unknown routes and the error envelope."""

from __future__ import annotations

import pytest

from .helpers import KNOWN_ERROR_CODES, OCI_MANIFEST, assert_error, digest_of, unique_repo


def test_version_check(client):
    # OCI "Determining Support" (end-1); Docker "API Version Check": the
    # header SHOULD be registry/2.0 on a 200.
    resp = client.get("/v2/")
    assert resp.status_code == 200
    assert resp.headers.get("Docker-Distribution-API-Version") == "registry/2.0"


def test_version_check_without_trailing_slash_is_not_an_error_page(client):
    # Clients sometimes probe /v2 without the slash; it must not be a 5xx.
    resp = client.get("/v2")
    assert resp.status_code < 500


@pytest.mark.parametrize("path", [
    "/v2/{repo}/nonsense",
    "/v2/{repo}/manifests",
    "/v2/{repo}/blobs",
    "/v2/_nothing_here",
])
def test_unknown_route_is_404_with_error_body(client, path):
    resp = client.get(path.format(repo=unique_repo()))
    assert_error(resp, 404)


def test_unknown_route_error_code_is_a_spec_code(client):
    # OCI "Error Codes": "The code field MUST be one of the following".
    resp = client.get(f"/v2/{unique_repo()}/nonsense")
    body = assert_error(resp, 404)
    codes = {e["code"] for e in body["errors"]}
    assert codes <= KNOWN_ERROR_CODES, f"codes outside the spec's list: {codes - KNOWN_ERROR_CODES}"


def test_wrong_method_is_not_a_server_error(client, repo):
    # POST on a manifest is no endpoint of either spec.
    resp = client.post(f"/v2/{repo}/manifests/latest", data=b"{}", headers={"Content-Type": OCI_MANIFEST})
    assert_error(resp, (404, 405))


def test_error_responses_are_json_with_code_and_message(client, repo):
    resp = client.get(f"/v2/{repo}/blobs/{digest_of(b'missing')}")
    body = assert_error(resp, 404, ("BLOB_UNKNOWN", "NAME_UNKNOWN"))
    for err in body["errors"]:
        assert set(err) >= {"code", "message"}


BAD_INPUTS = [
    ("GET", "/v2/{repo}/blobs/sha256:xyz", {}, None),
    ("GET", "/v2/{repo}/blobs/not-a-digest", {}, None),
    ("GET", "/v2/{repo}/manifests/sha256:" + "z" * 64, {}, None),
    ("GET", "/v2/{repo}/tags/list?n=abc", {}, None),
    ("GET", "/v2/{repo}/tags/list?n=-5", {}, None),
    ("GET", "/v2/_catalog?n=abc", {}, None),
    ("GET", "/v2/{repo}/referrers/sha256:nope", {}, None),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST}, b"{not json"),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST}, b"[1, 2, 3]"),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST}, b'"string"'),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST}, b""),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST},
     b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode() + b'"}'),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST},
     b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode()
     + b'", "config": {"mediaType": "x", "digest": "garbage", "size": 2}, "layers": []}'),
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": OCI_MANIFEST},
     b'{"schemaVersion": 2, "mediaType": "' + OCI_MANIFEST.encode()
     + b'", "config": {"mediaType": "x", "digest": "sha256:' + b"0" * 64 + b'", "size": -1}, "layers": {}}'),
    ("POST", "/v2/{repo}/blobs/uploads/?digest=sha256:short", {}, b"abc"),
    ("PATCH", "/v2/{repo}/blobs/uploads/not-a-real-upload", {"Content-Range": "0-2"}, b"abc"),
    ("PUT", "/v2/{repo}/blobs/uploads/not-a-real-upload?digest=" + digest_of(b"abc"), {}, b"abc"),
    ("DELETE", "/v2/{repo}/blobs/not-a-digest", {}, None),
    ("DELETE", "/v2/{repo}/manifests/sha256:" + "z" * 64, {}, None),
]


@pytest.mark.parametrize("method,path,headers,body", BAD_INPUTS,
                         ids=[f"{m} {p.split('{repo}')[-1][:60]}" for m, p, _, _ in BAD_INPUTS])
def test_bad_input_is_a_4xx_with_error_body(client, repo, method, path, headers, body):
    resp = client.request(method, path.format(repo=repo), headers=headers, data=body)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:300])
    assert_error(resp, resp.status_code)


# Inputs where the specs leave the answer open (a registry may store unknown
# manifest types; Docker says a failed mount falls back to a 202 upload), but
# the answer must still never be a server error.
ODD_INPUTS = [
    ("PUT", "/v2/{repo}/manifests/latest", {"Content-Type": "text/plain"}, b'{"hello": "world"}'),
    ("PUT", "/v2/{repo}/manifests/latest", {}, b'{"schemaVersion": 1}'),
    ("POST", "/v2/{repo}/blobs/uploads/?mount=garbage&from=other/repo", {}, b""),
    ("POST", "/v2/{repo}/blobs/uploads/?mount=" + digest_of(b"x") + "&from=UPPER/Case", {}, b""),
    ("GET", "/v2/{repo}/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", {}, None),
    ("GET", "/v2/{repo}/tags/list?last=" + "x" * 300, {}, None),
]


@pytest.mark.parametrize("method,path,headers,body", ODD_INPUTS,
                         ids=[f"{m} {p.split('{repo}')[-1][:60]}" for m, p, _, _ in ODD_INPUTS])
def test_odd_input_is_never_a_server_error(client, repo, method, path, headers, body):
    resp = client.request(method, path.format(repo=repo), headers=headers, data=body)
    assert resp.status_code < 500, (resp.status_code, resp.text[:300])
    if resp.status_code >= 400:
        assert_error(resp, resp.status_code)
