"""The referrers API (OCI v1.1 "Listing Referrers", end-12a/end-12b)."""

from __future__ import annotations

import pytest

from .helpers import (ACCEPT_ALL_MANIFESTS, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, assert_error, canonical,
                      descriptor, digest_of, header_list, next_link, unique_repo, unique_tag)

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"
CUSTOM_CONFIG = "application/vnd.example.config.v1+json"


def _referrers(client, repo, dig, **params):
    """GET the referrers of ``dig`` and follow any Link pages; return the
    first response and all descriptors."""
    resp = client.get(f"/v2/{repo}/referrers/{dig}", params=params or None)
    assert resp.status_code == 200, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].split(";")[0].strip() == OCI_INDEX
    body = resp.json()
    assert body["schemaVersion"] == 2
    assert body.get("mediaType", OCI_INDEX) == OCI_INDEX
    assert isinstance(body["manifests"], list)
    manifests = list(body["manifests"])
    link = next_link(resp)
    while link:
        page = client.get(client.url(link))
        assert page.status_code == 200
        manifests += page.json()["manifests"]
        link = next_link(page)
    return resp, manifests


@pytest.fixture()
def subject(client, repo):
    return client.push_image(repo, "subject")


def test_push_with_subject_sets_oci_subject(client, subject):
    art = client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    # OCI "Pushing Manifests with Subject": a registry supporting the
    # referrers API MUST answer with "OCI-Subject: <subject digest>".
    assert art.response.headers.get("OCI-Subject") == subject.digest


def test_push_without_subject_has_no_oci_subject(client, repo):
    pushed = client.push_image(repo, "plain")
    assert "OCI-Subject" not in pushed.response.headers


def test_referrers_list(client, subject):
    sbom = client.push_artifact(subject.repo, subject.descriptor(), SBOM,
                                annotations={"org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                                             "org.example.format": "json"})
    sig = client.push_artifact(subject.repo, subject.descriptor(), SIG)
    resp, manifests = _referrers(client, subject.repo, subject.digest)
    by_digest = {d["digest"]: d for d in manifests}
    assert set(by_digest) == {sbom.digest, sig.digest}
    d = by_digest[sbom.digest]
    assert d["mediaType"] == OCI_MANIFEST
    assert d["size"] == sbom.size
    assert d["artifactType"] == SBOM
    # "The descriptors MUST include annotations from the image manifest".
    assert d["annotations"] == {"org.opencontainers.image.created": "2024-01-01T00:00:00Z",
                                "org.example.format": "json"}
    assert by_digest[sig.digest]["artifactType"] == SIG
    assert not by_digest[sig.digest].get("annotations")


def test_artifact_type_falls_back_to_config_media_type(client, subject):
    # "If the artifactType is empty or missing in the image manifest, the
    # value of artifactType MUST be set to the config descriptor mediaType".
    art = client.push_artifact(subject.repo, subject.descriptor(), None, config_media_type=CUSTOM_CONFIG)
    _, manifests = _referrers(client, subject.repo, subject.digest)
    (d,) = [m for m in manifests if m["digest"] == art.digest]
    assert d["artifactType"] == CUSTOM_CONFIG


def test_index_referrer_without_artifact_type(client, subject):
    # "If the artifactType is empty or missing in an index, the artifactType
    # MUST be omitted."
    child = client.push_image(subject.repo, None)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.descriptor()],
             "subject": subject.descriptor(), "annotations": {"org.example.kind": "bundle"}}
    pushed = client.push_manifest(subject.repo, None, index, OCI_INDEX)
    assert pushed.response.headers.get("OCI-Subject") == subject.digest
    _, manifests = _referrers(client, subject.repo, subject.digest)
    (d,) = [m for m in manifests if m["digest"] == pushed.digest]
    assert d["mediaType"] == OCI_INDEX
    assert d["size"] == pushed.size
    assert "artifactType" not in d
    assert d["annotations"] == {"org.example.kind": "bundle"}


def test_index_referrer_with_artifact_type(client, subject):
    child = client.push_image(subject.repo, None)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": SBOM,
             "manifests": [child.descriptor()], "subject": subject.descriptor()}
    pushed = client.push_manifest(subject.repo, None, index, OCI_INDEX)
    _, manifests = _referrers(client, subject.repo, subject.digest)
    (d,) = [m for m in manifests if m["digest"] == pushed.digest]
    assert d["artifactType"] == SBOM


def test_referrers_filter_by_artifact_type(client, subject):
    sbom = client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    client.push_artifact(subject.repo, subject.descriptor(), SIG)
    resp, manifests = _referrers(client, subject.repo, subject.digest, artifactType=SBOM)
    # "If filtering is requested and applied, the response MUST include a
    # header OCI-Filters-Applied: artifactType".
    assert header_list(resp, "OCI-Filters-Applied") == ["artifactType"]
    assert [m["digest"] for m in manifests] == [sbom.digest]


def test_referrers_filter_matching_nothing(client, subject):
    client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    resp, manifests = _referrers(client, subject.repo, subject.digest, artifactType="application/none")
    assert header_list(resp, "OCI-Filters-Applied") == ["artifactType"]
    assert manifests == []


def test_referrers_without_filter_has_no_filters_header(client, subject):
    client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    resp, _ = _referrers(client, subject.repo, subject.digest)
    assert "OCI-Filters-Applied" not in resp.headers


def test_referrers_of_unknown_digest_is_empty(client, subject):
    # "If the registry supports the referrers API, the registry MUST NOT
    # return a 404"; "If a query results in no matching referrers, an empty
    # manifest list MUST be returned."
    _, manifests = _referrers(client, subject.repo, digest_of(b"nothing refers to this"))
    assert manifests == []


def test_referrers_of_subject_without_referrers_is_empty(client, subject):
    _, manifests = _referrers(client, subject.repo, subject.digest)
    assert manifests == []


@pytest.mark.parametrize("bad", ["sha256:nothex", "not-a-digest", "sha256:" + "a" * 10])
def test_referrers_with_invalid_digest(client, subject, bad):
    # "If the request is invalid, such as a <digest> with an invalid syntax,
    # a 400 Bad Request MUST be returned."
    resp = client.get(f"/v2/{subject.repo}/referrers/{bad}")
    assert_error(resp, 400, "DIGEST_INVALID")


def test_referrer_pushed_before_its_subject(client, repo):
    future = client.push_image(unique_repo(), None)  # the same bytes, pushed elsewhere
    art = client.push_artifact(repo, future.descriptor(), SBOM)
    _, manifests = _referrers(client, repo, future.digest)
    assert [m["digest"] for m in manifests] == [art.digest]


def test_referrers_are_scoped_to_the_repository(client, subject):
    client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    other = unique_repo()
    client.push_image(other, "x")
    _, manifests = _referrers(client, other, subject.digest)
    assert manifests == []


def test_tagged_referrer_is_listed_once(client, subject):
    art = client.push_artifact(subject.repo, subject.descriptor(), SIG, tag=unique_tag())
    resp = client.put_manifest(subject.repo, unique_tag(), art.body, OCI_MANIFEST)
    assert resp.status_code == 201
    _, manifests = _referrers(client, subject.repo, subject.digest)
    assert [m["digest"] for m in manifests] == [art.digest]


def test_deleted_referrer_disappears(client, subject):
    keep = client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    gone = client.push_artifact(subject.repo, subject.descriptor(), SIG)
    resp = client.delete(f"/v2/{subject.repo}/manifests/{gone.digest}")
    assert resp.status_code == 202, resp.text
    _, manifests = _referrers(client, subject.repo, subject.digest)
    assert [m["digest"] for m in manifests] == [keep.digest]


def test_referrer_of_an_index_subject(client, repo):
    child = client.push_image(repo, None)
    index = client.push_manifest(repo, "idx", {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                               "manifests": [child.descriptor()]}, OCI_INDEX)
    art = client.push_artifact(repo, index.descriptor(), SIG)
    assert art.response.headers.get("OCI-Subject") == index.digest
    _, manifests = _referrers(client, repo, index.digest)
    assert [m["digest"] for m in manifests] == [art.digest]


def test_referrer_with_empty_descriptors(client, subject):
    # The OCI 1.1 "empty descriptor" artifact: config is {} with the empty
    # media type, and the one layer is the empty descriptor too.
    client.push_blob(subject.repo, b"{}")
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": SBOM,
                "config": descriptor(OCI_EMPTY, b"{}"), "layers": [descriptor(OCI_EMPTY, b"{}")],
                "subject": subject.descriptor()}
    pushed = client.push_manifest(subject.repo, None, manifest)
    got = client.get_manifest(subject.repo, pushed.digest, ACCEPT_ALL_MANIFESTS)
    assert got.content == canonical(manifest)
    _, manifests = _referrers(client, subject.repo, subject.digest)
    assert pushed.digest in [m["digest"] for m in manifests]


def test_referrers_after_subject_is_deleted(client, subject):
    client.push_artifact(subject.repo, subject.descriptor(), SBOM)
    assert client.delete(f"/v2/{subject.repo}/manifests/{subject.digest}").status_code == 202
    # The referrers API never answers 404 (it may or may not still list the
    # orphaned referrer).
    _referrers(client, subject.repo, subject.digest)
