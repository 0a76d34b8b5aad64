"""The policy hooks (``cargohold_before_*``): what each is called with, and
that a refusal reaches the client as the policy's error with nothing of the
change visible afterwards.  A broken policy fails closed with 503."""

from __future__ import annotations

import pytest

from cargohold import hookimpl
from cargohold.errors import Denied
from .helpers import (ReportLog, blob_stored, digest_of, error_code, image_manifest, push_blob, push_image, put_manifest,
                      upload_sessions)

HOOKS = ("cargohold_before_blob_upload", "cargohold_before_blob_commit", "cargohold_before_blob_mount",
         "cargohold_before_tag_put", "cargohold_before_delete")


class Policy:
    """Records every policy call; refuses the hooks named in ``refuse``."""

    def __init__(self, *refuse: str):
        self.refuse = set(refuse)
        self.calls: list[tuple[str, dict]] = []

    def _seen(self, hook: str, **kwargs) -> None:
        self.calls.append((hook, kwargs))
        if hook in self.refuse:
            raise Denied(f"refused by {hook}")

    def seen(self, hook: str) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == hook]

    @hookimpl
    def cargohold_before_blob_upload(self, repository, size, digest):
        self._seen("cargohold_before_blob_upload", repository=repository, size=size, digest=digest)

    @hookimpl
    def cargohold_before_blob_commit(self, repository, digest, size):
        self._seen("cargohold_before_blob_commit", repository=repository, digest=digest, size=size)

    @hookimpl
    def cargohold_before_blob_mount(self, repository, from_repository, digest, size):
        self._seen("cargohold_before_blob_mount", repository=repository, from_repository=from_repository,
                   digest=digest, size=size)

    @hookimpl
    def cargohold_before_tag_put(self, repository, tag, old_digest, new_digest):
        self._seen("cargohold_before_tag_put", repository=repository, tag=tag, old_digest=old_digest,
                   new_digest=new_digest)

    @hookimpl
    def cargohold_before_delete(self, repository, kind, reference, digest, tags):
        self._seen("cargohold_before_delete", repository=repository, kind=kind, reference=reference, digest=digest,
                   tags=tags)


def assert_denied(resp, hook: str) -> None:
    assert resp.status_code == 403, resp.data
    assert error_code(resp) == "DENIED"
    assert resp.get_json()["errors"][0]["message"] == f"refused by {hook}"


def start_session(client, name: str) -> str:
    resp = client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status_code == 202, resp.data
    return resp.headers["Location"].rpartition("/")[2]


# -- uploads -------------------------------------------------------------------


def test_monolithic_upload_refused_before_any_byte_is_stored(client, state):
    policy = Policy("cargohold_before_blob_upload")
    state.pm.register(policy)
    data = b"monolithic"
    digest = digest_of(data)
    resp = client.post(f"/v2/app/blobs/uploads/?digest={digest}", data=data, content_type="application/octet-stream")
    assert_denied(resp, "cargohold_before_blob_upload")
    assert policy.seen("cargohold_before_blob_upload") == [{"repository": "app", "size": len(data), "digest": digest}]
    assert policy.seen("cargohold_before_blob_commit") == []
    assert not blob_stored(state, digest)
    assert client.head(f"/v2/app/blobs/{digest}").status_code == 404


def test_session_start_refused_creates_no_session(client, state):
    policy = Policy("cargohold_before_blob_upload")
    state.pm.register(policy)
    assert_denied(client.post("/v2/app/blobs/uploads/"), "cargohold_before_blob_upload")
    assert policy.seen("cargohold_before_blob_upload") == [{"repository": "app", "size": None, "digest": None}]
    assert upload_sessions(state, "app") == []


def test_chunk_sees_the_total_size_and_a_refusal_keeps_the_session_as_it_was(client, state):
    upload_id = start_session(client, "app")
    assert client.patch(f"/v2/app/blobs/uploads/{upload_id}", data=b"12345",
                        headers={"Content-Range": "0-4"}).status_code == 202
    policy = Policy("cargohold_before_blob_upload")
    state.pm.register(policy)
    resp = client.patch(f"/v2/app/blobs/uploads/{upload_id}", data=b"678", headers={"Content-Range": "5-7"})
    assert_denied(resp, "cargohold_before_blob_upload")
    assert policy.seen("cargohold_before_blob_upload") == [{"repository": "app", "size": 8, "digest": None}]
    status = client.get(f"/v2/app/blobs/uploads/{upload_id}")
    assert status.status_code == 204 and status.headers["Range"] == "0-4"


@pytest.mark.parametrize("whole", [False, True], ids=["chunked-then-put", "whole-blob-put"])
def test_commit_refused_leaves_no_blob_and_no_session(client, state, whole):
    policy = Policy("cargohold_before_blob_commit")
    state.pm.register(policy)
    data = b"some layer bytes"
    digest = digest_of(data)
    upload_id = start_session(client, "app")
    if whole:
        resp = client.put(f"/v2/app/blobs/uploads/{upload_id}?digest={digest}", data=data,
                          content_type="application/octet-stream")
    else:
        assert client.patch(f"/v2/app/blobs/uploads/{upload_id}", data=data).status_code == 202
        resp = client.put(f"/v2/app/blobs/uploads/{upload_id}?digest={digest}")
    assert_denied(resp, "cargohold_before_blob_commit")
    assert policy.seen("cargohold_before_blob_commit") == [{"repository": "app", "digest": digest, "size": len(data)}]
    assert not blob_stored(state, digest)
    assert client.head(f"/v2/app/blobs/{digest}").status_code == 404
    assert client.get(f"/v2/app/blobs/uploads/{upload_id}").status_code == 404
    assert upload_sessions(state, "app") == []


def test_commit_refused_on_a_repush_keeps_the_blob_of_other_repositories(client, state):
    digest = push_blob(client, "a", b"shared")
    state.pm.register(Policy("cargohold_before_blob_commit"))
    resp = client.post(f"/v2/b/blobs/uploads/?digest={digest}", data=b"shared", content_type="application/octet-stream")
    assert_denied(resp, "cargohold_before_blob_commit")
    assert client.head(f"/v2/b/blobs/{digest}").status_code == 404
    assert client.head(f"/v2/a/blobs/{digest}").status_code == 200


# -- mount ---------------------------------------------------------------------


def test_mount_refused_links_nothing_and_starts_no_session(client, state):
    digest = push_blob(client, "a", b"mountable")
    policy = Policy("cargohold_before_blob_mount")
    state.pm.register(policy)
    assert_denied(client.post(f"/v2/b/blobs/uploads/?mount={digest}&from=a"), "cargohold_before_blob_mount")
    assert policy.seen("cargohold_before_blob_mount") == [
        {"repository": "b", "from_repository": "a", "digest": digest, "size": len(b"mountable")}]
    assert client.head(f"/v2/b/blobs/{digest}").status_code == 404
    assert upload_sessions(state, "b") == []


def test_unmountable_blob_falls_back_to_an_upload_the_upload_policy_sees(client, state):
    policy = Policy()
    state.pm.register(policy)
    resp = client.post(f"/v2/b/blobs/uploads/?mount={digest_of(b'nowhere')}&from=a")
    assert resp.status_code == 202
    assert policy.seen("cargohold_before_blob_mount") == []
    assert policy.seen("cargohold_before_blob_upload") == [{"repository": "b", "size": None, "digest": None}]


# -- tags ----------------------------------------------------------------------


def test_tag_put_sees_old_and_new_digest(client, state):
    policy = Policy()
    state.pm.register(policy)
    first, _ = push_image(client, "app", "v1", layer=b"one")
    again, _ = push_image(client, "app", "v1", layer=b"one")
    second, _ = push_image(client, "app", "v1", layer=b"two")
    assert first == again
    assert policy.seen("cargohold_before_tag_put") == [
        {"repository": "app", "tag": "v1", "old_digest": None, "new_digest": first},
        {"repository": "app", "tag": "v1", "old_digest": first, "new_digest": first},
        {"repository": "app", "tag": "v1", "old_digest": first, "new_digest": second},
    ]


def test_tag_put_refused_stores_nothing_of_the_manifest(client, state):
    first, _ = push_image(client, "app", "v1", layer=b"one")
    state.pm.register(Policy("cargohold_before_tag_put"))
    raw = image_manifest(client, "app", layer=b"two")
    digest = digest_of(raw)
    assert_denied(put_manifest(client, "app", f"{digest}?tag=v1&tag=v2", raw), "cargohold_before_tag_put")
    assert client.get("/v2/app/manifests/v1").headers["Docker-Content-Digest"] == first
    assert client.get(f"/v2/app/manifests/{digest}").status_code == 404
    assert client.get("/v2/app/tags/list").get_json()["tags"] == ["v1"]


# -- deletes -------------------------------------------------------------------


def test_manifest_delete_sees_its_tags_and_a_refusal_deletes_nothing(client, state):
    digest, _ = push_image(client, "app", "v1")
    assert put_manifest(client, "app", "v2", client.get("/v2/app/manifests/v1").data).status_code == 201
    policy = Policy("cargohold_before_delete")
    state.pm.register(policy)
    assert_denied(client.delete(f"/v2/app/manifests/{digest}"), "cargohold_before_delete")
    assert policy.seen("cargohold_before_delete") == [
        {"repository": "app", "kind": "manifest", "reference": digest, "digest": digest, "tags": ["v1", "v2"]}]
    assert client.get("/v2/app/tags/list").get_json()["tags"] == ["v1", "v2"]
    assert client.head(f"/v2/app/manifests/{digest}").status_code == 200


def test_tag_delete_sees_its_manifest_and_a_refusal_keeps_the_tag(client, state):
    digest, _ = push_image(client, "app", "v1")
    policy = Policy("cargohold_before_delete")
    state.pm.register(policy)
    assert_denied(client.delete("/v2/app/manifests/v1"), "cargohold_before_delete")
    assert policy.seen("cargohold_before_delete") == [
        {"repository": "app", "kind": "tag", "reference": "v1", "digest": digest, "tags": ["v1"]}]
    assert client.head("/v2/app/manifests/v1").status_code == 200


def test_blob_delete_refused_keeps_the_link(client, state):
    digest = push_blob(client, "app", b"keep me")
    policy = Policy("cargohold_before_delete")
    state.pm.register(policy)
    assert_denied(client.delete(f"/v2/app/blobs/{digest}"), "cargohold_before_delete")
    assert policy.seen("cargohold_before_delete") == [
        {"repository": "app", "kind": "blob", "reference": digest, "digest": digest, "tags": []}]
    assert client.head(f"/v2/app/blobs/{digest}").status_code == 200


def test_delete_of_something_missing_is_not_asked(client, state):
    policy = Policy("cargohold_before_delete")
    state.pm.register(policy)
    push_image(client, "app", "v1")
    assert error_code(client.delete(f"/v2/app/blobs/{digest_of(b'none')}")) == "BLOB_UNKNOWN"
    assert error_code(client.delete(f"/v2/app/manifests/{digest_of(b'none')}")) == "MANIFEST_UNKNOWN"
    assert error_code(client.delete("/v2/app/manifests/nosuchtag")) == "MANIFEST_UNKNOWN"
    assert policy.seen("cargohold_before_delete") == []


# -- broken policies -----------------------------------------------------------


class Broken:
    @hookimpl
    def cargohold_before_blob_commit(self):
        raise RuntimeError("policy database at /srv/secret is gone")


def test_a_broken_policy_fails_closed_with_503_and_is_reported(client, state):
    reports = ReportLog()
    state.pm.register(Broken(), name="broken-policy")
    state.pm.register(reports)
    data = b"bytes"
    digest = digest_of(data)
    resp = client.post(f"/v2/app/blobs/uploads/?digest={digest}", data=data, content_type="application/octet-stream")
    assert resp.status_code == 503
    assert resp.get_json() == {"errors": [{
        "code": "UNAVAILABLE", "message": "a policy check failed; try again later",
        "detail": {"plugin": "broken-policy", "hook": "cargohold_before_blob_commit"}}]}
    assert b"secret" not in resp.data and b"Traceback" not in resp.data
    assert [type(e) for e in reports.errors] == [RuntimeError]
    assert not blob_stored(state, digest)


def test_hooks_without_implementations_are_not_called(client, state):
    # Installed policy plugins without rules implement nothing.  The example
    # plugin (contrib/example-plugin, installed for its own tests) always does.
    state.pm.unregister(name="size-limit")
    for hook in HOOKS:
        assert not getattr(state.pm.hook, hook).get_hookimpls()
    push_image(client, "app", "v1")
    assert client.delete("/v2/app/manifests/v1").status_code == 202
