"""Malformed requests get the spec's status and error code, never a 500."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Callable

import pytest

from cargohold.errors import NotFound

from .helpers import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    digest_of,
    error_code,
    image_manifest,
    put_manifest,
)

BLOB_DATA = b"0123456789"
MISSING = digest_of(b"not stored anywhere")
HEX64 = MISSING.partition(":")[2]
UUID = "0d0a7a43-5e8c-4a4e-9e1c-6a6e1d1b7c5e"


@dataclasses.dataclass
class Seed:
    blob: str
    upload: str
    manifest: dict
    digest: str

    def fill(self, path: str) -> str:
        return path.format(blob=self.blob, upload=self.upload, digest=self.digest, missing=MISSING)


@pytest.fixture
def seed(client) -> Seed:
    blob = digest_of(BLOB_DATA)
    assert client.post(f"/v2/app/blobs/uploads/?digest={blob}", data=BLOB_DATA).status_code == 201
    raw = image_manifest(client, "app")
    assert put_manifest(client, "app", "v1", raw).status_code == 201
    upload = client.post("/v2/app/blobs/uploads/").headers["Location"]
    return Seed(blob, upload, json.loads(raw), digest_of(raw))


@dataclasses.dataclass
class Case:
    id: str
    method: str
    path: str
    status: int
    code: str | None  # None: a success, no error body
    headers: dict | None = None
    data: bytes | None = None
    content_type: str | None = None
    environ: dict | None = None
    mutate: Callable[[dict], object] | None = None  # edits a copy of the seeded manifest


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def mutate(doc):
        node = doc
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        return doc

    return mutate


def _drop(*keys):
    def mutate(doc):
        node = doc
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
        return doc

    return mutate


def _index(manifests):
    return lambda doc: {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


M = "/v2/app/manifests/v2"
CASES = [
    # -- uploads: headers -------------------------------------------------------
    Case("patch-content-range-garbage", "PATCH", "{upload}", 400, "BLOB_UPLOAD_INVALID",
         headers={"Content-Range": "garbage"}, data=b"abc"),
    Case("patch-content-range-letters", "PATCH", "{upload}", 400, "BLOB_UPLOAD_INVALID",
         headers={"Content-Range": "bytes=a-c"}, data=b"abc"),
    Case("patch-content-range-backwards", "PATCH", "{upload}", 400, "BLOB_UPLOAD_INVALID",
         headers={"Content-Range": "5-2"}, data=b"abc"),
    Case("patch-content-range-negative", "PATCH", "{upload}", 400, "BLOB_UPLOAD_INVALID",
         headers={"Content-Range": "-5-10"}, data=b"abc"),
    Case("patch-out-of-order", "PATCH", "{upload}", 416, "RANGE_INVALID",
         headers={"Content-Range": "3-5"}, data=b"abc"),
    Case("patch-range-disagrees-with-length", "PATCH", "{upload}", 416, "RANGE_INVALID",
         headers={"Content-Range": "0-9"}, data=b"abc"),
    Case("patch-content-length-garbage", "PATCH", "{upload}", 400, "SIZE_INVALID",
         data=b"abc", environ={"CONTENT_LENGTH": "abc"}),
    Case("patch-content-length-negative", "PATCH", "{upload}", 400, "SIZE_INVALID",
         data=b"abc", environ={"CONTENT_LENGTH": "-3"}),
    Case("put-upload-without-digest", "PUT", "{upload}", 400, "DIGEST_INVALID"),
    Case("put-upload-md5", "PUT", "{upload}?digest=md5:" + HEX64[:32], 400, "DIGEST_INVALID"),
    Case("put-upload-short-hex", "PUT", "{upload}?digest=sha256:" + HEX64[:63], 400, "DIGEST_INVALID"),
    Case("put-upload-uppercase-hex", "PUT", "{upload}?digest=sha256:" + HEX64.upper(), 400, "DIGEST_INVALID"),
    Case("put-upload-no-algorithm", "PUT", "{upload}?digest=" + HEX64, 400, "DIGEST_INVALID"),
    Case("post-digest-algorithm-md5", "POST", "/v2/app/blobs/uploads/?digest-algorithm=md5", 400, "DIGEST_INVALID"),
    Case("post-digest-short", "POST", "/v2/app/blobs/uploads/?digest=sha256:abc", 400, "DIGEST_INVALID", data=b"x"),
    Case("post-digest-negative-length", "POST", "/v2/app/blobs/uploads/?digest={missing}", 400, "SIZE_INVALID",
         data=b"x", environ={"CONTENT_LENGTH": "-1"}),
    Case("post-mount-not-a-digest", "POST", "/v2/app/blobs/uploads/?mount=latest&from=app", 400, "DIGEST_INVALID"),
    Case("post-mount-bad-source", "POST", "/v2/app/blobs/uploads/?mount={blob}&from=Other", 400, "NAME_INVALID"),
    # -- uploads: unknown ids ------------------------------------------------------
    Case("upload-id-word", "GET", "/v2/app/blobs/uploads/nope", 404, "BLOB_UPLOAD_UNKNOWN"),
    Case("upload-id-unknown-uuid-patch", "PATCH", f"/v2/app/blobs/uploads/{UUID}", 404, "BLOB_UPLOAD_UNKNOWN",
         data=b"x"),
    Case("upload-id-unknown-uuid-put", "PUT", f"/v2/app/blobs/uploads/{UUID}?digest={{missing}}", 404,
         "BLOB_UPLOAD_UNKNOWN"),
    Case("upload-id-unknown-uuid-delete", "DELETE", f"/v2/app/blobs/uploads/{UUID}", 404, "BLOB_UPLOAD_UNKNOWN"),
    Case("upload-id-long", "GET", "/v2/app/blobs/uploads/" + "a" * 300, 404, "BLOB_UPLOAD_UNKNOWN"),
    Case("upload-id-colons", "GET", "/v2/app/blobs/uploads/" + UUID.replace("-", ":"), 404, "BLOB_UPLOAD_UNKNOWN"),
    Case("upload-of-other-repo", "GET", "/v2/other/blobs/uploads/{upload_id}", 404, "BLOB_UPLOAD_UNKNOWN"),
    # -- blobs ------------------------------------------------------------------------
    Case("blob-md5", "GET", "/v2/app/blobs/md5:" + HEX64[:32], 400, "DIGEST_INVALID"),
    Case("blob-short-hex", "GET", "/v2/app/blobs/sha256:" + HEX64[:63], 400, "DIGEST_INVALID"),
    Case("blob-uppercase-hex", "GET", "/v2/app/blobs/sha256:" + HEX64.upper(), 400, "DIGEST_INVALID"),
    Case("blob-sha512-with-sha256-length", "GET", "/v2/app/blobs/sha512:" + HEX64, 400, "DIGEST_INVALID"),
    Case("blob-no-colon", "GET", "/v2/app/blobs/sha256", 400, "DIGEST_INVALID"),
    Case("blob-trailing-newline", "GET", "/v2/app/blobs/{blob}%0A", 400, "DIGEST_INVALID"),
    Case("mount-trailing-newline", "POST", "/v2/other/blobs/uploads/?mount={blob}%0A&from=app", 400,
         "DIGEST_INVALID"),
    Case("blob-missing", "GET", "/v2/app/blobs/{missing}", 404, "BLOB_UNKNOWN"),
    Case("blob-delete-md5", "DELETE", "/v2/app/blobs/md5:" + HEX64[:32], 400, "DIGEST_INVALID"),
    Case("range-backwards", "GET", "/v2/app/blobs/{blob}", 416, "RANGE_INVALID", headers={"Range": "bytes=5-2"}),
    Case("range-past-end", "GET", "/v2/app/blobs/{blob}", 416, "RANGE_INVALID", headers={"Range": "bytes=100-"}),
    Case("range-empty-suffix", "GET", "/v2/app/blobs/{blob}", 416, "RANGE_INVALID", headers={"Range": "bytes=-0"}),
    Case("range-garbage-ignored", "GET", "/v2/app/blobs/{blob}", 200, None, headers={"Range": "bytes=abc"}),
    Case("range-other-unit-ignored", "GET", "/v2/app/blobs/{blob}", 200, None, headers={"Range": "items=0-1"}),
    Case("range-multiple-ignored", "GET", "/v2/app/blobs/{blob}", 200, None, headers={"Range": "bytes=0-1,3-4"}),
    Case("range-no-dash-ignored", "GET", "/v2/app/blobs/{blob}", 200, None, headers={"Range": "bytes=3"}),
    # -- manifest bodies -----------------------------------------------------------------
    Case("manifest-not-json", "PUT", M, 400, "MANIFEST_INVALID", data=b"this is not json"),
    Case("manifest-empty", "PUT", M, 400, "MANIFEST_INVALID", data=b""),
    Case("manifest-array", "PUT", M, 400, "MANIFEST_INVALID", data=b"[1, 2, 3]"),
    Case("manifest-string", "PUT", M, 400, "MANIFEST_INVALID", data=b'"manifest"'),
    Case("manifest-null", "PUT", M, 400, "MANIFEST_INVALID", data=b"null"),
    Case("manifest-bad-utf8", "PUT", M, 400, "MANIFEST_INVALID", data=b'{"schemaVersion": 2, "x": "\xff\xfe"}'),
    Case("manifest-deeply-nested", "PUT", M, 400, "MANIFEST_INVALID", data=b"[" * 100_000 + b"]" * 100_000),
    Case("manifest-schema-version-1", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("schemaVersion", 1)),
    Case("manifest-schema-version-string", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("schemaVersion", "2")),
    Case("manifest-schema-version-missing", "PUT", M, 400, "MANIFEST_INVALID", mutate=_drop("schemaVersion")),
    Case("manifest-media-type-number", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("mediaType", 5)),
    Case("content-type-schema1-signed", "PUT", M, 400, "MANIFEST_INVALID",
         content_type="application/vnd.docker.distribution.manifest.v1+prettyjws"),
    Case("content-type-schema1", "PUT", M, 400, "MANIFEST_INVALID",
         content_type="application/vnd.docker.distribution.manifest.v1+json"),
    Case("content-type-mismatch", "PUT", M, 400, "MANIFEST_INVALID", content_type=DOCKER_MANIFEST),
    Case("content-type-unknown", "PUT", M, 400, "MANIFEST_INVALID", content_type="application/vnd.example+json",
         mutate=_drop("mediaType")),
    Case("config-list", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("config", [])),
    Case("config-missing", "PUT", M, 400, "MANIFEST_INVALID", mutate=_drop("config")),
    Case("layers-object", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", {})),
    Case("layer-null", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", [None])),
    Case("layer-size-string", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", 0, "size", "10")),
    Case("layer-size-negative", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", 0, "size", -1)),
    Case("layer-size-bool", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", 0, "size", True)),
    Case("layer-size-float", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", 0, "size", 5.5)),
    Case("layer-digest-number", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", 0, "digest", 5)),
    Case("layer-digest-md5", "PUT", M, 400, "MANIFEST_INVALID",
         mutate=_set("layers", 0, "digest", "md5:" + HEX64[:32])),
    Case("layer-media-type-missing", "PUT", M, 400, "MANIFEST_INVALID", mutate=_drop("layers", 0, "mediaType")),
    Case("layer-urls-string", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("layers", 0, "urls", "http://x")),
    Case("config-digest-missing", "PUT", M, 400, "MANIFEST_INVALID", mutate=_drop("config", "digest")),
    Case("annotations-list", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("annotations", ["a"])),
    Case("artifact-type-number", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("artifactType", 1)),
    Case("subject-string", "PUT", M, 400, "MANIFEST_INVALID", mutate=_set("subject", "sha256:" + HEX64)),
    Case("index-manifests-string", "PUT", M, 400, "MANIFEST_INVALID", content_type=OCI_INDEX,
         mutate=_index("none")),
    Case("index-child-bad-digest", "PUT", M, 400, "MANIFEST_INVALID", content_type=OCI_INDEX,
         mutate=_index([{"mediaType": OCI_MANIFEST, "digest": "sha256:xyz", "size": 1}])),
    Case("layer-unknown", "PUT", M, 400, "MANIFEST_BLOB_UNKNOWN", mutate=_set("layers", 0, "digest", MISSING)),
    Case("manifest-negative-length", "PUT", M, 400, "SIZE_INVALID", environ={"CONTENT_LENGTH": "-1"}),
    Case("manifest-garbage-length", "PUT", M, 400, "SIZE_INVALID", environ={"CONTENT_LENGTH": "ten"}),
    # -- manifest references ---------------------------------------------------------------
    Case("put-by-wrong-digest", "PUT", "/v2/app/manifests/{missing}", 400, "DIGEST_INVALID", mutate=lambda d: d),
    Case("put-tag-leading-dot", "PUT", "/v2/app/manifests/.hidden", 400, "TAG_INVALID", mutate=lambda d: d),
    Case("put-tag-129", "PUT", "/v2/app/manifests/" + "t" * 129, 400, "TAG_INVALID", mutate=lambda d: d),
    Case("put-query-tag-invalid", "PUT", "/v2/app/manifests/v2?tag=-x", 400, "TAG_INVALID", mutate=lambda d: d),
    Case("put-md5-reference", "PUT", "/v2/app/manifests/md5:" + HEX64[:32], 400, "DIGEST_INVALID",
         mutate=lambda d: d),
    # A reference that cannot exist is not found on reads and deletes.
    Case("get-short-digest", "GET", "/v2/app/manifests/sha256:abc", 404, "MANIFEST_UNKNOWN"),
    Case("get-tag-trailing-newline", "GET", "/v2/app/manifests/v1%0A", 404, "MANIFEST_UNKNOWN"),
    Case("delete-tag-trailing-newline", "DELETE", "/v2/app/manifests/v1%0A", 404, "MANIFEST_UNKNOWN"),
    Case("delete-md5-reference", "DELETE", "/v2/app/manifests/md5:" + HEX64[:32], 404, "MANIFEST_UNKNOWN"),
    Case("get-unknown-tag", "GET", "/v2/app/manifests/nope", 404, "MANIFEST_UNKNOWN"),
    Case("get-unknown-digest", "GET", "/v2/app/manifests/{missing}", 404, "MANIFEST_UNKNOWN"),
    Case("delete-unknown-digest", "DELETE", "/v2/app/manifests/{missing}", 404, "MANIFEST_UNKNOWN"),
    Case("delete-unknown-tag", "DELETE", "/v2/app/manifests/nope", 404, "MANIFEST_UNKNOWN"),
    Case("delete-blob-unknown", "DELETE", "/v2/app/blobs/{missing}", 404, "BLOB_UNKNOWN"),
    # -- listings and names ---------------------------------------------------------------------
    Case("tags-n-negative", "GET", "/v2/app/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
    Case("tags-n-word", "GET", "/v2/app/tags/list?n=abc", 400, "PAGINATION_NUMBER_INVALID"),
    Case("tags-n-float", "GET", "/v2/app/tags/list?n=1e3", 400, "PAGINATION_NUMBER_INVALID"),
    Case("tags-n-huge", "GET", "/v2/app/tags/list?n=" + "9" * 40, 200, None),
    Case("catalog-n-negative", "GET", "/v2/_catalog?n=-1", 400, "PAGINATION_NUMBER_INVALID"),
    Case("catalog-n-huge", "GET", "/v2/_catalog?n=" + "9" * 40, 200, None),
    Case("tags-unknown-repo", "GET", "/v2/nobody/tags/list", 404, "NAME_UNKNOWN"),
    Case("name-uppercase", "GET", "/v2/App/tags/list", 400, "NAME_INVALID"),
    Case("name-too-long", "GET", "/v2/" + "a" * 256 + "/tags/list", 400, "NAME_INVALID"),
    Case("name-triple-underscore", "POST", "/v2/a___b/blobs/uploads/", 400, "NAME_INVALID"),
    Case("referrers-bad-digest", "GET", "/v2/app/referrers/sha256:abc", 400, "DIGEST_INVALID"),
    Case("unknown-endpoint", "GET", "/v2/app/nonsense", 404, NotFound.code),
    Case("method-not-allowed", "POST", "/v2/app/tags/list", 405, "UNSUPPORTED"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_request(client, seed, case):
    path = case.path.replace("{upload_id}", seed.upload.rpartition("/")[2])
    kw = {"headers": case.headers or {}, "environ_overrides": case.environ or {}}
    if case.method == "PUT" and "/manifests/" in path:
        data = case.data
        if case.mutate is not None or data is None:
            doc = copy.deepcopy(seed.manifest)
            data = json.dumps((case.mutate or (lambda d: d))(doc)).encode()
        kw["data"] = data
        kw["content_type"] = case.content_type or OCI_MANIFEST
    elif case.data is not None:
        kw["data"] = case.data
    resp = client.open(seed.fill(path), method=case.method, **kw)
    assert resp.status_code == case.status, resp.data[:300]
    if case.code is None:
        assert resp.data == BLOB_DATA or resp.is_json
    else:
        assert error_code(resp) == case.code
    assert b"Traceback" not in resp.data


def test_seeded_upload_is_untouched_by_bad_chunks(client, state, seed):
    for case in CASES:
        if case.path == "{upload}" and case.method == "PATCH":
            kw = {"headers": case.headers or {}, "environ_overrides": case.environ or {}, "data": case.data}
            assert client.patch(seed.upload, **kw).status_code >= 400
    assert state.registry.uploads.size("app", seed.upload.rpartition("/")[2]) == 0
    resp = client.patch(seed.upload, data=b"abc", headers={"Content-Range": "0-2"})
    assert resp.status_code == 202 and resp.headers["Range"] == "0-2"


def test_layer_with_urls_need_not_be_stored(client, seed):
    # Non-distributable layers are fetched from their URLs: not MANIFEST_BLOB_UNKNOWN.
    doc = copy.deepcopy(seed.manifest)
    doc["layers"].append({"mediaType": OCI_LAYER, "digest": MISSING, "size": 3, "urls": ["https://example.com/l"]})
    assert put_manifest(client, "app", "foreign", json.dumps(doc).encode()).status_code == 201
