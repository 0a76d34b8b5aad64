"""Push: blob uploads (monolithic, chunked, streamed), mounts, cancel, errors."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from .helpers import (assert_error, digest_of, random_bytes, range_end, unique_repo, with_query)

OCTET = {"Content-Type": "application/octet-stream"}
EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def _start(client, repo, params=None):
    resp = client.start_upload(repo, params)
    assert resp.status_code == 202, (resp.status_code, resp.text)
    return resp


def _loc(client, resp):
    assert "Location" in resp.headers, dict(resp.headers)
    return client.url(resp.headers["Location"])


def _assert_pullable(client, repo, dig, data, location=None):
    resp = client.get(f"/v2/{repo}/blobs/{dig}")
    assert resp.status_code == 200, (resp.status_code, resp.text[:200])
    assert resp.content == data
    if location is not None:
        # "<blob-location> is a pullable blob URL"
        follow = client.get(client.url(location))
        assert follow.status_code == 200 and follow.content == data


def _assert_absent(client, repo, dig):
    assert client.head(f"/v2/{repo}/blobs/{dig}").status_code == 404


# -- POST then PUT (OCI "POST then PUT"; Docker "Initiate Resumable Blob Upload")


def test_post_starts_an_upload_session(client, repo):
    resp = _start(client, repo)
    # OCI: 202 with a Location; Docker: Docker-Upload-UUID, and a Range that
    # is empty ("0-0") since nothing has been received.
    assert resp.headers.get("Location")
    uid = resp.headers.get("Docker-Upload-UUID")
    assert uid, dict(resp.headers)
    assert uid in resp.headers["Location"]
    if "Range" in resp.headers:
        assert resp.headers["Range"] in ("0-0", "bytes=0-0")


def test_upload_sessions_are_unique(client, repo):
    a, b = _start(client, repo), _start(client, repo)
    assert a.headers["Location"] != b.headers["Location"]
    assert a.headers["Docker-Upload-UUID"] != b.headers["Docker-Upload-UUID"]


def test_post_then_put(client, repo):
    data = random_bytes(5000)
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))
    resp = client.put(with_query(loc, {"digest": dig}), data=data, headers=OCTET)
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Location")
    assert resp.headers.get("Docker-Content-Digest") == dig
    _assert_pullable(client, repo, dig, data, resp.headers["Location"])


def test_monolithic_single_post(client, repo):
    # OCI "Single POST" (end-4b).  The spec lets a registry without support
    # answer 202; cargohold supports it, so 201 is required here.
    data = random_bytes(3000)
    dig = digest_of(data)
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": dig}, data=data, headers=OCTET)
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Location")
    if "Docker-Content-Digest" in resp.headers:
        assert resp.headers["Docker-Content-Digest"] == dig
    _assert_pullable(client, repo, dig, data, resp.headers["Location"])


def test_single_post_digest_mismatch(client, repo):
    data = random_bytes(100)
    wrong = digest_of(b"something else")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, data=data, headers=OCTET)
    assert_error(resp, 400, "DIGEST_INVALID")
    _assert_absent(client, repo, wrong)
    _assert_absent(client, repo, digest_of(data))


def test_zero_length_blob(client, repo):
    loc = _loc(client, _start(client, repo))
    resp = client.put(with_query(loc, {"digest": EMPTY_SHA256}), data=b"", headers=OCTET)
    assert resp.status_code == 201, resp.text
    head = client.head(f"/v2/{repo}/blobs/{EMPTY_SHA256}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "0"
    assert head.headers["Docker-Content-Digest"] == EMPTY_SHA256
    get = client.get(f"/v2/{repo}/blobs/{EMPTY_SHA256}")
    assert get.status_code == 200 and get.content == b""


def test_zero_length_blob_single_post(client, repo):
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": EMPTY_SHA256}, data=b"", headers=OCTET)
    assert resp.status_code == 201, resp.text
    assert client.head(f"/v2/{repo}/blobs/{EMPTY_SHA256}").status_code == 200


def test_pushing_an_existing_blob_again(client, repo):
    data = random_bytes(64)
    dig = client.push_blob(repo, data)
    assert client.push_blob(repo, data) == dig
    _assert_pullable(client, repo, dig, data)


# -- digests -----------------------------------------------------------------


def test_put_digest_mismatch_is_rejected_and_nothing_is_stored(client, repo):
    data = random_bytes(777)
    wrong = digest_of(b"not this content")
    loc = _loc(client, _start(client, repo))
    resp = client.put(with_query(loc, {"digest": wrong}), data=data, headers=OCTET)
    assert_error(resp, 400, "DIGEST_INVALID")
    _assert_absent(client, repo, wrong)
    _assert_absent(client, repo, digest_of(data))


@pytest.mark.parametrize("bad", ["garbage", "sha256:short", "sha256:" + "x" * 64, "sha256", ":abc"])
def test_put_with_garbled_digest(client, repo, bad):
    loc = _loc(client, _start(client, repo))
    resp = client.put(with_query(loc, {"digest": bad}), data=b"abc", headers=OCTET)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_put_with_unsupported_algorithm(client, repo):
    # OCI "Pushing blobs": an invalid digest or unsupported algorithm SHOULD
    # be a 400.
    loc = _loc(client, _start(client, repo))
    resp = client.put(with_query(loc, {"digest": "md5:" + hashlib.md5(b"abc").hexdigest()}),
                      data=b"abc", headers=OCTET)
    assert_error(resp, 400, ("DIGEST_INVALID", "UNSUPPORTED"))


def test_put_without_digest_does_not_complete(client, repo):
    # Docker "Completed Upload": without the digest parameter the upload is
    # not considered complete.
    loc = _loc(client, _start(client, repo))
    resp = client.put(loc, data=b"abc", headers=OCTET)
    assert_error(resp, 400, ("DIGEST_INVALID", "BLOB_UPLOAD_INVALID"))
    _assert_absent(client, repo, digest_of(b"abc"))


def test_single_post_with_garbled_digest(client, repo):
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": "sha256:nothex"}, data=b"a",
                       headers=OCTET)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_sha512_single_post(client, repo):
    data = random_bytes(999)
    dig = digest_of(data, "sha512")
    resp = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": dig}, data=data, headers=OCTET)
    assert resp.status_code == 201, resp.text
    head = client.head(f"/v2/{repo}/blobs/{dig}")
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == dig
    _assert_pullable(client, repo, dig, data)


def test_sha512_chunked_with_digest_algorithm(client, repo):
    # OCI (end-4c): "When pushing a blob with a digest algorithm other than
    # sha256, the post request SHOULD include the digest-algorithm parameter".
    data = random_bytes(2048)
    dig = digest_of(data, "sha512")
    loc = _loc(client, _start(client, repo, {"digest-algorithm": "sha512"}))
    resp = client.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert resp.status_code == 202, resp.text
    loc = _loc(client, resp)
    resp = client.patch(loc, data=data[1000:], headers={**OCTET, "Content-Range": f"1000-{len(data) - 1}"})
    assert resp.status_code == 202, resp.text
    resp = client.put(with_query(_loc(client, resp), {"digest": dig}), data=b"")
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Docker-Content-Digest") == dig
    _assert_pullable(client, repo, dig, data)


def test_sha512_digest_mismatch(client, repo):
    data = random_bytes(50)
    wrong = digest_of(b"other", "sha512")
    loc = _loc(client, _start(client, repo, {"digest-algorithm": "sha512"}))
    resp = client.put(with_query(loc, {"digest": wrong}), data=data, headers=OCTET)
    assert_error(resp, 400, "DIGEST_INVALID")
    _assert_absent(client, repo, wrong)


# -- chunked (OCI "Pushing a blob in chunks"; Docker "Chunked Upload") ----------


def test_chunked_upload(client, repo):
    data = random_bytes(3000)
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))
    offset = 0
    for size in (1000, 1000, 1000):
        chunk = data[offset:offset + size]
        resp = client.patch(loc, data=chunk, headers={**OCTET, "Content-Range": f"{offset}-{offset + size - 1}",
                                                      "Content-Length": str(size)})
        assert resp.status_code == 202, resp.text
        # OCI: each chunk answer MUST carry Location and "Range: 0-<end>".
        assert range_end(resp.headers.get("Range")) == offset + size - 1
        assert resp.headers.get("Docker-Upload-UUID")
        loc = _loc(client, resp)
        offset += size
    resp = client.put(with_query(loc, {"digest": dig}), data=b"")
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Location")
    assert resp.headers.get("Docker-Content-Digest") == dig
    _assert_pullable(client, repo, dig, data, resp.headers["Location"])


def test_chunked_upload_final_chunk_in_put(client, repo):
    # OCI: "The final chunk MAY be uploaded using a PATCH request or it MAY
    # be uploaded in the closing PUT request."
    data = random_bytes(1500)
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert resp.status_code == 202
    resp = client.put(with_query(_loc(client, resp), {"digest": dig}), data=data[1000:],
                      headers={**OCTET, "Content-Range": f"1000-{len(data) - 1}"})
    assert resp.status_code == 201, resp.text
    _assert_pullable(client, repo, dig, data)


def test_out_of_order_chunk_is_416_and_upload_can_resume(client, repo):
    data = random_bytes(30)
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=data[:10], headers={**OCTET, "Content-Range": "0-9"})
    assert resp.status_code == 202
    loc = _loc(client, resp)
    # a gap: the next chunk must start at 10
    resp = client.patch(loc, data=data[20:], headers={**OCTET, "Content-Range": "20-29"})
    assert resp.status_code == 416, resp.text
    # Docker "Chunked Upload": the 416 carries the current status.
    assert resp.headers.get("Location")
    assert range_end(resp.headers.get("Range")) == 9
    # an overlap
    resp = client.patch(loc, data=data[5:15], headers={**OCTET, "Content-Range": "5-14"})
    assert resp.status_code == 416, resp.text
    # OCI: "A GET request may be used to retrieve the current valid offset".
    status = client.get(loc)
    assert status.status_code == 204
    assert range_end(status.headers.get("Range")) == 9
    resp = client.patch(_loc(client, status), data=data[10:], headers={**OCTET, "Content-Range": "10-29"})
    assert resp.status_code == 202, resp.text
    resp = client.put(with_query(_loc(client, resp), {"digest": dig}))
    assert resp.status_code == 201, resp.text
    _assert_pullable(client, repo, dig, data)


def test_out_of_order_final_chunk_in_put(client, repo):
    data = random_bytes(20)
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=data[:10], headers={**OCTET, "Content-Range": "0-9"})
    assert resp.status_code == 202
    resp = client.put(with_query(_loc(client, resp), {"digest": digest_of(data)}), data=data[12:],
                      headers={**OCTET, "Content-Range": "12-19"})
    assert resp.status_code == 416, resp.text
    _assert_absent(client, repo, digest_of(data))


def test_upload_uuid_is_stable_across_chunks(client, repo):
    start = _start(client, repo)
    uid = start.headers["Docker-Upload-UUID"]
    resp = client.patch(_loc(client, start), data=b"abc", headers={**OCTET, "Content-Range": "0-2"})
    assert resp.headers.get("Docker-Upload-UUID") == uid
    resp = client.patch(_loc(client, resp), data=b"def", headers={**OCTET, "Content-Range": "3-5"})
    assert resp.headers.get("Docker-Upload-UUID") == uid


def test_concurrent_uploads_in_one_repository(client, repo):
    # OCI: "Registries MUST support concurrent uploads from one or more
    # clients".  Three interleaved sessions; two of them push the same blob.
    a, b = random_bytes(3000), random_bytes(3000)
    sessions = {name: [_loc(client, _start(client, repo)), data] for name, data in
                (("a", a), ("b", b), ("a2", a))}
    for i in range(3):
        rng = f"{i * 1000}-{(i + 1) * 1000 - 1}"
        for session in sessions.values():
            loc, data = session
            resp = client.patch(loc, data=data[i * 1000:(i + 1) * 1000], headers={**OCTET, "Content-Range": rng})
            assert resp.status_code == 202, resp.text
            session[0] = _loc(client, resp)
    for name in ("b", "a", "a2"):
        loc, data = sessions[name]
        resp = client.put(with_query(loc, {"digest": digest_of(data)}))
        assert resp.status_code == 201, resp.text
    _assert_pullable(client, repo, digest_of(a), a)
    _assert_pullable(client, repo, digest_of(b), b)


def test_large_blob_round_trip(client, repo):
    data = random_bytes(1 << 20) * 12 + b"tail"
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))
    offset = 0
    for size in (5 << 20, 5 << 20, len(data) - (10 << 20)):
        resp = client.patch(loc, data=data[offset:offset + size],
                            headers={**OCTET, "Content-Range": f"{offset}-{offset + size - 1}"})
        assert resp.status_code == 202, resp.text
        loc = _loc(client, resp)
        offset += size
    resp = client.put(with_query(loc, {"digest": dig}))
    assert resp.status_code == 201, resp.text
    got = client.get(f"/v2/{repo}/blobs/{dig}")
    assert got.status_code == 200
    assert int(got.headers["Content-Length"]) == len(data)
    assert digest_of(got.content) == dig
    tail = client.get(f"/v2/{repo}/blobs/{dig}", headers={"Range": f"bytes={len(data) - 4}-"})
    assert tail.status_code == 206 and tail.content == b"tail"


def test_first_chunk_must_start_at_zero(client, repo):
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=b"abcde", headers={**OCTET, "Content-Range": "5-9"})
    assert resp.status_code == 416, resp.text


@pytest.mark.parametrize("content_range", ["0-", "abc", "4-0", "-4", "0-4-9"])
def test_malformed_content_range(client, repo, content_range):
    # OCI: the range "MUST match ^[0-9]+-[0-9]+$"; Docker: 416 for an invalid
    # Content-Range format.
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=b"abcde", headers={**OCTET, "Content-Range": content_range})
    assert resp.status_code in (400, 416), (resp.status_code, resp.text)
    if resp.status_code == 400:
        assert_error(resp, 400)


@pytest.mark.parametrize("content_range", ["bytes=0-4", "bytes 0-4/5", "bytes 0-4/*"])
def test_http_style_content_range(client, repo, content_range):
    # Not the spec's form (a client MUST send "<start>-<end>"), but clients
    # do send these.  A registry may refuse them (400/416) or read them as
    # bytes 0-4; reading them any other way corrupts the upload.
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=b"abcde", headers={**OCTET, "Content-Range": content_range})
    assert resp.status_code in (202, 400, 416), (resp.status_code, resp.text)
    if resp.status_code == 202:
        assert range_end(resp.headers.get("Range")) == 4
        put = client.put(with_query(_loc(client, resp), {"digest": digest_of(b"abcde")}))
        assert put.status_code == 201, put.text


def test_content_range_disagreeing_with_body_length(client, repo):
    # Content-Range claims 10 bytes, the body has 5.
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=b"abcde", headers={**OCTET, "Content-Range": "0-9"})
    assert resp.status_code in (400, 416), (resp.status_code, resp.text)
    if resp.status_code == 400:
        assert_error(resp, 400, ("SIZE_INVALID", "BLOB_UPLOAD_INVALID"))


def test_streamed_patch_without_content_range(client, repo):
    # Docker "stream upload": PATCH bodies without Content-Range are appended.
    data = random_bytes(4096)
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=data[:1500], headers=OCTET)
    assert resp.status_code == 202, resp.text
    assert range_end(resp.headers.get("Range")) == 1499
    resp = client.patch(_loc(client, resp), data=data[1500:], headers=OCTET)
    assert resp.status_code == 202, resp.text
    assert range_end(resp.headers.get("Range")) == len(data) - 1
    resp = client.put(with_query(_loc(client, resp), {"digest": dig}))
    assert resp.status_code == 201, resp.text
    _assert_pullable(client, repo, dig, data)


def test_streamed_patch_with_chunked_transfer_encoding(client, repo):
    data = random_bytes(10000)
    dig = digest_of(data)
    loc = _loc(client, _start(client, repo))

    def gen():
        for i in range(0, len(data), 3000):
            yield data[i:i + 3000]

    resp = client.patch(loc, data=gen(), headers=OCTET)
    assert resp.status_code == 202, resp.text
    assert range_end(resp.headers.get("Range")) == len(data) - 1
    resp = client.put(with_query(_loc(client, resp), {"digest": dig}))
    assert resp.status_code == 201, resp.text
    _assert_pullable(client, repo, dig, data)


def test_digest_mismatch_after_chunks(client, repo):
    data = random_bytes(200)
    loc = _loc(client, _start(client, repo))
    resp = client.patch(loc, data=data, headers={**OCTET, "Content-Range": "0-199"})
    assert resp.status_code == 202
    wrong = digest_of(data + b"!")
    resp = client.put(with_query(_loc(client, resp), {"digest": wrong}))
    assert_error(resp, 400, "DIGEST_INVALID")
    _assert_absent(client, repo, wrong)
    _assert_absent(client, repo, digest_of(data))


# -- status and cancel (OCI end-13; Docker "Upload Progress", "Canceling an Upload")


def test_upload_status(client, repo):
    start = _start(client, repo)
    loc = _loc(client, start)
    status = client.get(loc)
    assert status.status_code == 204
    assert status.headers.get("Location")
    assert status.headers.get("Docker-Upload-UUID") == start.headers["Docker-Upload-UUID"]
    assert status.headers.get("Range") in ("0-0", "bytes=0-0")
    client.patch(loc, data=b"x" * 42, headers={**OCTET, "Content-Range": "0-41"})
    status = client.get(loc)
    assert status.status_code == 204
    assert range_end(status.headers.get("Range")) == 41
    assert status.content == b""


def test_cancel_upload(client, repo):
    loc = _loc(client, _start(client, repo))
    client.patch(loc, data=b"partial", headers={**OCTET, "Content-Range": "0-6"})
    resp = client.delete(loc)
    assert resp.status_code == 204, resp.text
    assert_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.patch(loc, data=b"more", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.put(with_query(loc, {"digest": digest_of(b"partial")})), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(client.delete(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_completed_upload_is_gone(client, repo):
    loc = _loc(client, _start(client, repo))
    assert client.put(with_query(loc, {"digest": digest_of(b"done")}), data=b"done").status_code == 201
    assert_error(client.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("method", ["GET", "PATCH", "PUT", "DELETE"])
def test_unknown_upload(client, repo, method):
    client.push_blob(repo, b"repository exists")
    url = f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    if method == "PUT":
        url += f"?digest={digest_of(b'abc')}"
    resp = client.request(method, url, data=b"abc" if method in ("PATCH", "PUT") else None)
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_session_is_scoped_to_its_repository(client, repo):
    start = _start(client, repo)
    uid = start.headers["Docker-Upload-UUID"]
    other = unique_repo()
    client.push_blob(other, b"other exists")
    assert_error(client.get(f"/v2/{other}/blobs/uploads/{uid}"), 404, "BLOB_UPLOAD_UNKNOWN")


# -- cross-repository mount (OCI end-11; Docker "Cross Repository Blob Mount") --


def test_mount_from_another_repository(client, repo):
    data = random_bytes(500)
    dig = client.push_blob(repo, data)
    target = unique_repo()
    _assert_absent(client, target, dig)
    resp = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dig, "from": repo},
                       headers={"Content-Length": "0"})
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Location")
    assert resp.headers.get("Docker-Content-Digest") == dig
    _assert_pullable(client, target, dig, data, resp.headers["Location"])
    # the source keeps it
    _assert_pullable(client, repo, dig, data)


def test_mount_of_unknown_blob_falls_back_to_upload(client, repo):
    client.push_blob(repo, b"source exists")
    missing = digest_of(b"never pushed anywhere " + uuid.uuid4().bytes)
    target = unique_repo()
    resp = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": missing, "from": repo},
                       headers={"Content-Length": "0"})
    assert resp.status_code == 202, resp.text
    assert resp.headers.get("Docker-Upload-UUID")
    # the session is a real one
    data = random_bytes(20)
    put = client.put(with_query(_loc(client, resp), {"digest": digest_of(data)}), data=data, headers=OCTET)
    assert put.status_code == 201, put.text
    _assert_absent(client, target, missing)


def test_mount_from_repository_without_the_blob(client, repo):
    data = random_bytes(64)
    dig = client.push_blob(repo, data)
    source = unique_repo()
    client.push_blob(source, b"source has other things")
    target = unique_repo()
    resp = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dig, "from": source},
                       headers={"Content-Length": "0"})
    # OCI: the registry "MAY treat the from parameter as optional, and it MAY
    # cross-mount the blob if it can be found"; otherwise a 202 session.
    assert resp.status_code in (201, 202), resp.text
    if resp.status_code == 201:
        _assert_pullable(client, target, dig, data)
    else:
        assert resp.headers.get("Location")


def test_mount_without_from(client, repo):
    data = random_bytes(64)
    dig = client.push_blob(repo, data)
    target = unique_repo()
    resp = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dig}, headers={"Content-Length": "0"})
    assert resp.status_code in (201, 202), resp.text
    assert resp.headers.get("Location")
    if resp.status_code == 201:
        _assert_pullable(client, target, dig, data)
    else:
        assert resp.headers.get("Docker-Upload-UUID")


def test_mount_into_repository_that_already_has_the_blob(client, repo):
    data = random_bytes(80)
    dig = client.push_blob(repo, data)
    target = unique_repo()
    client.push_blob(target, data)
    resp = client.post(f"/v2/{target}/blobs/uploads/", params={"mount": dig, "from": repo},
                       headers={"Content-Length": "0"})
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Docker-Content-Digest") == dig
    _assert_pullable(client, target, dig, data)
