"""Content management: deleting manifests, tags and blobs (and refusing to
when deletes are disabled)."""

from __future__ import annotations

import pytest

from .helpers import OCI_MANIFEST, assert_error, digest_of, random_bytes, unique_repo, with_query


def _tags_or_none(client, repo):
    resp = client.get(f"/v2/{repo}/tags/list")
    if resp.status_code == 404:
        assert_error(resp, 404, "NAME_UNKNOWN")
        return None
    assert resp.status_code == 200
    return resp.json().get("tags") or []


# -- manifests (OCI "Deleting Manifests", end-9) ----------------------------------


def test_delete_manifest_by_digest(client, repo):
    gone = client.push_image(repo, "gone")
    keep = client.push_image(repo, "keep")
    assert client.put_manifest(repo, "gone-too", gone.body, OCI_MANIFEST).status_code == 201
    resp = client.delete(f"/v2/{repo}/manifests/{gone.digest}")
    assert resp.status_code == 202, resp.text
    # "Once deleted, a GET to /v2/<name>/manifests/<digest> and any tag
    # pointing to that digest will return a 404."
    assert_error(client.get_manifest(repo, gone.digest), 404, "MANIFEST_UNKNOWN")
    assert client.get_manifest(repo, gone.digest, method="HEAD").status_code == 404
    assert_error(client.get_manifest(repo, "gone"), 404, "MANIFEST_UNKNOWN")
    assert_error(client.get_manifest(repo, "gone-too"), 404, "MANIFEST_UNKNOWN")
    assert client.tags(repo) == ["keep"]
    # other content is untouched
    assert client.get_manifest(repo, "keep").content == keep.body


def test_delete_manifest_twice(client, repo):
    pushed = client.push_image(repo, "x")
    assert client.delete(f"/v2/{repo}/manifests/{pushed.digest}").status_code == 202
    assert_error(client.delete(f"/v2/{repo}/manifests/{pushed.digest}"), 404, "MANIFEST_UNKNOWN")


def test_delete_unknown_manifest(client, repo):
    client.push_image(repo, "x")
    assert_error(client.delete(f"/v2/{repo}/manifests/{digest_of(b'unknown')}"), 404, "MANIFEST_UNKNOWN")


def test_delete_manifest_in_unknown_repository(client):
    # "If the repository does not exist, the response MUST return 404".
    resp = client.delete(f"/v2/{unique_repo()}/manifests/{digest_of(b'x')}")
    assert_error(resp, 404, ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"))


def test_deleted_manifest_can_be_pushed_again(client, repo):
    pushed = client.push_image(repo, "again")
    assert client.delete(f"/v2/{repo}/manifests/{pushed.digest}").status_code == 202
    resp = client.put_manifest(repo, "again", pushed.body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    assert client.get_manifest(repo, "again").content == pushed.body


@pytest.mark.parametrize("ref", [f"sha256:{'z' * 64}", "sha256:abc", ".INVALID_MANIFEST_NAME", "-x"])
def test_delete_of_a_reference_that_cannot_exist(client, repo, ref):
    # As for GET and HEAD: a reference that cannot name a manifest is not found.
    pushed = client.push_image(repo, "x")
    assert_error(client.delete(f"/v2/{repo}/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")
    assert client.get_manifest(repo, "x").content == pushed.body


# -- tags (OCI "Deleting tags") ---------------------------------------------------


def test_delete_tag(client, repo):
    pushed = client.push_image(repo, "doomed")
    assert client.put_manifest(repo, "survivor", pushed.body, OCI_MANIFEST).status_code == 201
    resp = client.delete(f"/v2/{repo}/manifests/doomed")
    assert resp.status_code == 202, resp.text
    # "Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404."
    assert_error(client.get_manifest(repo, "doomed"), 404, "MANIFEST_UNKNOWN")
    # Deleting a tag removes the tag only: the manifest and its other tags stay.
    assert client.get_manifest(repo, pushed.digest).status_code == 200
    assert client.get_manifest(repo, "survivor").status_code == 200
    assert client.tags(repo) == ["survivor"]


def test_delete_unknown_tag(client, repo):
    client.push_image(repo, "x")
    assert_error(client.delete(f"/v2/{repo}/manifests/no-such-tag"), 404, "MANIFEST_UNKNOWN")


def test_delete_last_tag(client, repo):
    pushed = client.push_image(repo, "only")
    assert client.delete(f"/v2/{repo}/manifests/only").status_code == 202
    assert client.get_manifest(repo, pushed.digest).status_code == 200
    assert _tags_or_none(client, repo) in (None, [])


# -- blobs (OCI "Deleting Blobs", end-10) -----------------------------------------


def test_delete_blob(client, repo):
    data = random_bytes(300)
    dig = client.push_blob(repo, data)
    resp = client.delete(f"/v2/{repo}/blobs/{dig}")
    assert resp.status_code == 202, resp.text
    assert client.head(f"/v2/{repo}/blobs/{dig}").status_code == 404
    assert_error(client.get(f"/v2/{repo}/blobs/{dig}"), 404, "BLOB_UNKNOWN")
    # "If the blob is not found, a 404 Not Found code MUST be returned."
    assert_error(client.delete(f"/v2/{repo}/blobs/{dig}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_leaves_other_repositories_alone(client, repo):
    data = random_bytes(64)
    dig = client.push_blob(repo, data)
    other = unique_repo()
    assert client.push_blob(other, data) == dig
    assert client.delete(f"/v2/{repo}/blobs/{dig}").status_code == 202
    got = client.get(f"/v2/{other}/blobs/{dig}")
    assert got.status_code == 200 and got.content == data


def test_deleted_blob_can_be_pushed_again(client, repo):
    data = random_bytes(64)
    dig = client.push_blob(repo, data)
    assert client.delete(f"/v2/{repo}/blobs/{dig}").status_code == 202
    assert client.push_blob(repo, data) == dig
    assert client.get(f"/v2/{repo}/blobs/{dig}").content == data


def test_delete_unknown_blob(client, repo):
    client.push_blob(repo, b"exists")
    assert_error(client.delete(f"/v2/{repo}/blobs/{digest_of(b'unknown')}"), 404, "BLOB_UNKNOWN")


def test_delete_blob_with_invalid_digest(client, repo):
    client.push_blob(repo, b"exists")
    assert_error(client.delete(f"/v2/{repo}/blobs/sha256:nothex"), 400, "DIGEST_INVALID")


# -- deletes disabled --------------------------------------------------------------
# OCI: if deletion is disabled the registry MUST answer 400 or 405; Docker
# specifies 405 Method Not Allowed with UNSUPPORTED.


def test_disabled_manifest_delete(nodelete_client, repo):
    c = nodelete_client
    pushed = c.push_image(repo, "keep")
    assert_error(c.delete(f"/v2/{repo}/manifests/{pushed.digest}"), 405, "UNSUPPORTED")
    assert c.get_manifest(repo, pushed.digest).status_code == 200


def test_disabled_tag_delete(nodelete_client, repo):
    c = nodelete_client
    c.push_image(repo, "keep")
    assert_error(c.delete(f"/v2/{repo}/manifests/keep"), 405, "UNSUPPORTED")
    assert c.get_manifest(repo, "keep").status_code == 200


def test_disabled_blob_delete(nodelete_client, repo):
    c = nodelete_client
    dig = c.push_blob(repo, b"stays")
    assert_error(c.delete(f"/v2/{repo}/blobs/{dig}"), 405, "UNSUPPORTED")
    assert c.head(f"/v2/{repo}/blobs/{dig}").status_code == 200


def test_cancelling_an_upload_still_works_when_deletes_are_disabled(nodelete_client, repo):
    # Cancelling an upload deletes no content; it is not governed by the
    # delete switch.
    c = nodelete_client
    start = c.start_upload(repo)
    assert start.status_code == 202
    loc = c.url(start.headers["Location"])
    assert c.delete(loc).status_code == 204
    assert_error(c.put(with_query(loc, {"digest": digest_of(b"")}), data=b""), 404, "BLOB_UPLOAD_UNKNOWN")


@pytest.mark.parametrize("what", ["manifest", "blob"])
def test_disabled_delete_of_unknown_content(nodelete_client, repo, what):
    c = nodelete_client
    c.push_blob(repo, b"repo exists")
    path = f"/v2/{repo}/{'manifests' if what == 'manifest' else 'blobs'}/{digest_of(b'unknown')}"
    # The switch is checked first (the reference registry) or the content is
    # looked up first: either answer is a spec answer.
    resp = c.delete(path)
    assert resp.status_code in (404, 405), resp.text
    assert_error(resp, resp.status_code, ("UNSUPPORTED", "MANIFEST_UNKNOWN", "BLOB_UNKNOWN"))
