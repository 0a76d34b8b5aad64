"""Manifests: push (OCI and Docker types), validation, tags, negotiation."""

from __future__ import annotations

import json

import pytest

from .helpers import (ACCEPT_ALL_MANIFESTS, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_LIST, DOCKER_MANIFEST,
                      OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, assert_error, canonical, descriptor,
                      digest_of, header_list, random_bytes, unique_tag)


def _get(client, repo, ref, accept=ACCEPT_ALL_MANIFESTS):
    return client.get_manifest(repo, ref, accept)


def _assert_stored(client, pushed, ref):
    resp = _get(client, pushed.repo, ref)
    assert resp.status_code == 200, resp.text
    assert resp.content == pushed.body
    assert resp.headers["Content-Type"] == pushed.media_type
    assert resp.headers["Docker-Content-Digest"] == pushed.digest


def _image_manifest(client, repo, layers=1, media_type=OCI_MANIFEST):
    """Push the blobs of an image and return its (unpushed) manifest dict."""
    docker = media_type == DOCKER_MANIFEST
    config = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                        "n": random_bytes(8).hex()})
    client.push_blob(repo, config)
    layer_data = [random_bytes(90) for _ in range(layers)]
    for d in layer_data:
        client.push_blob(repo, d)
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER, d) for d in layer_data],
    }


# -- pushing ---------------------------------------------------------------------


def test_put_oci_image_manifest_by_tag(client, repo):
    manifest = _image_manifest(client, repo, layers=2)
    body = canonical(manifest)
    dig = digest_of(body)
    resp = client.put_manifest(repo, "v1", body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    # OCI "Pushing Manifests": Location is a pullable manifest URL;
    # Docker-Content-Digest is the digest of the uploaded manifest.
    assert resp.headers.get("Docker-Content-Digest") == dig
    assert resp.headers.get("Location")
    follow = client.get(client.url(resp.headers["Location"]), headers={"Accept": ACCEPT_ALL_MANIFESTS})
    assert follow.status_code == 200 and follow.content == body


def test_put_manifest_by_digest(client, repo):
    body = canonical(_image_manifest(client, repo))
    dig = digest_of(body)
    resp = client.put_manifest(repo, dig, body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Docker-Content-Digest") == dig
    assert resp.headers.get("Location")
    resp = _get(client, repo, dig)
    assert resp.status_code == 200 and resp.content == body


def test_manifest_bytes_are_stored_exactly(client, repo):
    # OCI: "The registry MUST store the manifest in the exact byte
    # representation provided by the client."  Odd whitespace and key order.
    manifest = _image_manifest(client, repo)
    body = ("{\n  \"layers\" : " + json.dumps(manifest["layers"], indent=3) + ",\n\t\"schemaVersion\": 2,"
            " \"config\":" + json.dumps(manifest["config"]) + ", \"mediaType\": \"" + OCI_MANIFEST
            + "\" }\n\n").encode()
    resp = client.put_manifest(repo, "odd", body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == digest_of(body)
    for ref in ("odd", digest_of(body)):
        got = _get(client, repo, ref)
        assert got.content == body
        assert int(got.headers["Content-Length"]) == len(body)


def test_put_oci_index(client, repo):
    children = [client.push_image(repo, None, layers=1), client.push_image(repo, None, layers=2)]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            children[0].descriptor(platform={"architecture": "amd64", "os": "linux"}),
            children[1].descriptor(platform={"architecture": "arm64", "os": "linux"}),
        ],
    }
    pushed = client.push_manifest(repo, "multi", index, OCI_INDEX)
    assert pushed.response.headers["Docker-Content-Digest"] == pushed.digest
    _assert_stored(client, pushed, "multi")
    _assert_stored(client, pushed, pushed.digest)
    for child in children:
        _assert_stored(client, child, child.digest)


def test_put_docker_schema2_manifest(client, repo):
    pushed = client.push_image(repo, "docker", layers=2, docker=True)
    assert pushed.media_type == DOCKER_MANIFEST
    _assert_stored(client, pushed, "docker")
    _assert_stored(client, pushed, pushed.digest)


def test_put_docker_manifest_list(client, repo):
    children = [client.push_image(repo, None, docker=True), client.push_image(repo, None, docker=True)]
    mlist = {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [
            children[0].descriptor(platform={"architecture": "amd64", "os": "linux"}),
            children[1].descriptor(platform={"architecture": "arm", "os": "linux", "variant": "v7"}),
        ],
    }
    pushed = client.push_manifest(repo, "list", mlist, DOCKER_LIST)
    _assert_stored(client, pushed, "list")
    _assert_stored(client, pushed, pushed.digest)


def test_put_manifest_without_layers(client, repo):
    # OCI: "the list of blobs MAY be empty".
    manifest = _image_manifest(client, repo, layers=0)
    assert manifest["layers"] == []
    pushed = client.push_manifest(repo, "nolayers", manifest)
    _assert_stored(client, pushed, "nolayers")


def test_manifest_of_4_megabytes_is_accepted(client, repo):
    # OCI: implementations "SHOULD expect to be able to support manifest
    # pushes of at least 4 megabytes".
    manifest = _image_manifest(client, repo)
    manifest["annotations"] = {"pad": ""}
    base = len(canonical(manifest))
    manifest["annotations"]["pad"] = "x" * (4_000_000 - base)
    body = canonical(manifest)
    assert len(body) == 4_000_000
    resp = client.put_manifest(repo, "big", body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text[:300]
    got = _get(client, repo, "big")
    assert got.status_code == 200 and got.content == body


# -- validation ----------------------------------------------------------------


def test_manifest_with_missing_layer(client, repo):
    manifest = _image_manifest(client, repo)
    missing = random_bytes(33)
    manifest["layers"].append(descriptor(OCI_LAYER, missing))
    resp = client.put_manifest(repo, "broken", canonical(manifest), OCI_MANIFEST)
    # OCI "Push": a rejection for unknown references MUST be
    # MANIFEST_BLOB_UNKNOWN.
    body = assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert {e["code"] for e in body["errors"]} == {"MANIFEST_BLOB_UNKNOWN"}
    assert_error(_get(client, repo, "broken"), 404, "MANIFEST_UNKNOWN")


def test_manifest_with_missing_config(client, repo):
    manifest = _image_manifest(client, repo)
    manifest["config"] = descriptor(OCI_CONFIG, b'{"never": "pushed"}')
    resp = client.put_manifest(repo, "broken", canonical(manifest), OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_referencing_blob_of_another_repository(client, repo):
    other = client.push_image(f"{repo}-other", "x")
    manifest = _image_manifest(client, repo)
    manifest["layers"].append(descriptor(OCI_LAYER, other.layers[0]))
    resp = client.put_manifest(repo, "cross", canonical(manifest), OCI_MANIFEST)
    # The blob is not in this repository: the registry MAY reject it (then
    # with MANIFEST_BLOB_UNKNOWN) or accept it.
    if resp.status_code != 201:
        assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_missing_child(client, repo):
    child = client.push_image(repo, None)
    ghost = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "ghost": True})
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.descriptor(), descriptor(OCI_MANIFEST, ghost)],
    }
    resp = client.put_manifest(repo, "idx", canonical(index), OCI_INDEX)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


def test_docker_list_with_missing_child(client, repo):
    ghost = canonical({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "ghost": True})
    mlist = {"schemaVersion": 2, "mediaType": DOCKER_LIST,
             "manifests": [descriptor(DOCKER_MANIFEST, ghost, platform={"architecture": "amd64", "os": "linux"})]}
    resp = client.put_manifest(repo, "list", canonical(mlist), DOCKER_LIST)
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize("body", [b"{not json", b"", b"null", b"[]", b"\xff\xfe"])
def test_invalid_json_manifest(client, repo, body):
    resp = client.put_manifest(repo, "bad", body, OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_INVALID")


def test_manifest_missing_required_fields(client, repo):
    resp = client.put_manifest(repo, "bad", canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST}),
                               OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_INVALID")


def test_manifest_with_wrong_schema_version(client, repo):
    manifest = _image_manifest(client, repo)
    manifest["schemaVersion"] = 3
    resp = client.put_manifest(repo, "bad", canonical(manifest), OCI_MANIFEST)
    assert_error(resp, 400, "MANIFEST_INVALID")


def test_content_type_mismatching_media_type(client, repo):
    # OCI: if a manifest has a mediaType field, it must be the Content-Type
    # it is pushed with.
    body = canonical(_image_manifest(client, repo))
    resp = client.put_manifest(repo, "mismatch", body, OCI_INDEX)
    assert_error(resp, 400, "MANIFEST_INVALID")
    resp = client.put_manifest(repo, "mismatch", body, DOCKER_MANIFEST)
    assert_error(resp, 400, "MANIFEST_INVALID")
    assert_error(_get(client, repo, "mismatch"), 404, "MANIFEST_UNKNOWN")


def test_content_type_parameters_are_ignored(client, repo):
    # OCI: "The registry SHOULD ignore parameters on the Content-Type header."
    body = canonical(_image_manifest(client, repo))
    resp = client.put_manifest(repo, "params", body, OCI_MANIFEST + "; charset=utf-8")
    assert resp.status_code == 201, resp.text
    got = _get(client, repo, "params")
    assert got.headers["Content-Type"] == OCI_MANIFEST


def test_put_by_digest_not_matching_body(client, repo):
    body = canonical(_image_manifest(client, repo))
    resp = client.put_manifest(repo, digest_of(body + b" "), body, OCI_MANIFEST)
    assert_error(resp, 400, "DIGEST_INVALID")
    assert_error(_get(client, repo, digest_of(body)), 404, "MANIFEST_UNKNOWN")


def test_oversized_manifest(client, repo):
    # OCI: a registry SHOULD limit manifest size and answer 413 Payload Too
    # Large above it (cargohold's default limit is 4 MiB).
    manifest = _image_manifest(client, repo)
    manifest["annotations"] = {"pad": "x" * (5 * 1024 * 1024)}
    resp = client.put_manifest(repo, "huge", canonical(manifest), OCI_MANIFEST)
    assert_error(resp, 413, ("SIZE_INVALID", "MANIFEST_INVALID"))
    assert_error(_get(client, repo, "huge"), 404, "MANIFEST_UNKNOWN")


@pytest.mark.parametrize("tag", ["-leading", ".leading", "x" * 129, "has:colon", "has+plus"])
def test_invalid_tag_is_rejected(client, repo, tag):
    # OCI: a tag MUST match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
    body = canonical(_image_manifest(client, repo))
    resp = client.put_manifest(repo, tag, body, OCI_MANIFEST)
    assert resp.status_code in (400, 404), (resp.status_code, resp.text)
    if resp.status_code == 400:
        assert_error(resp, 400, ("TAG_INVALID", "MANIFEST_INVALID", "NAME_INVALID", "DIGEST_INVALID"))
    else:
        assert_error(resp, 404)


@pytest.mark.parametrize("tag", ["_underscore", "UPPER", "a", "x" * 128, "v1.2.3-rc.1_build"])
def test_valid_unusual_tags(client, repo, tag):
    pushed = client.push_manifest(repo, tag, _image_manifest(client, repo))
    _assert_stored(client, pushed, tag)
    assert tag in client.tags(repo)


# -- tags ----------------------------------------------------------------------


def test_tag_overwrite_moves_the_tag(client, repo):
    first = client.push_image(repo, "moving")
    second = client.push_image(repo, "moving")
    assert first.digest != second.digest
    _assert_stored(client, second, "moving")
    # the old manifest stays reachable by digest
    _assert_stored(client, first, first.digest)
    assert client.tags(repo).count("moving") == 1


def test_several_tags_on_one_manifest(client, repo):
    pushed = client.push_image(repo, "one")
    resp = client.put_manifest(repo, "two", pushed.body, OCI_MANIFEST)
    assert resp.status_code == 201
    assert resp.headers["Docker-Content-Digest"] == pushed.digest
    _assert_stored(client, pushed, "one")
    _assert_stored(client, pushed, "two")


def test_push_by_digest_with_tag_parameters(client, repo):
    # OCI (end-7, v1.1.1): "When pushing a manifest by digest, the registry
    # MAY support the pushing of tags specified by addition of tag query
    # parameters" and then MUST include an OCI-Tag header for each accepted
    # tag (RFC 9110 field semantics: repeated or comma-joined).
    body = canonical(_image_manifest(client, repo))
    dig = digest_of(body)
    tags = ["1.2.3", "1.2", "latest"]
    resp = client.put_manifest(repo, dig, body, OCI_MANIFEST, params=[("tag", t) for t in tags])
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Docker-Content-Digest") == dig
    assert sorted(header_list(resp, "OCI-Tag")) == sorted(tags)
    listed = client.tags(repo)
    for t in tags:
        assert t in listed
        got = _get(client, repo, t)
        assert got.status_code == 200 and got.headers["Docker-Content-Digest"] == dig


def test_push_by_digest_with_many_tag_parameters(client, repo):
    # "SHOULD support pushing at least 10 tags per request."
    body = canonical(_image_manifest(client, repo))
    tags = [f"t{i:02d}" for i in range(12)]
    resp = client.put_manifest(repo, digest_of(body), body, OCI_MANIFEST, params=[("tag", t) for t in tags])
    assert resp.status_code == 201, resp.text
    assert sorted(header_list(resp, "OCI-Tag")) == tags
    assert set(tags) <= set(client.tags(repo))


def test_tag_parameter_with_invalid_tag(client, repo):
    body = canonical(_image_manifest(client, repo))
    resp = client.put_manifest(repo, digest_of(body), body, OCI_MANIFEST, params=[("tag", "ok"), ("tag", "-bad")])
    # Either the whole push is refused (400), or "-bad" is not accepted and
    # so has no OCI-Tag entry.
    if resp.status_code == 201:
        assert "-bad" not in header_list(resp, "OCI-Tag")
        assert "-bad" not in client.tags(repo)
    else:
        assert_error(resp, 400)


# -- content negotiation ---------------------------------------------------------


def test_get_with_accept_excluding_stored_type(client, repo):
    # OCI defers to RFC 7231 negotiation; the reference registry answers 404
    # MANIFEST_UNKNOWN when the Accept header excludes an OCI manifest, other
    # registries return the stored manifest anyway, and RFC 7231 allows 406.
    pushed = client.push_image(repo, "oci")
    resp = _get(client, repo, "oci", accept=DOCKER_MANIFEST)
    if resp.status_code == 200:
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.content == pushed.body
    elif resp.status_code == 404:
        assert_error(resp, 404, "MANIFEST_UNKNOWN")
    else:
        assert resp.status_code == 406, (resp.status_code, resp.text)


def test_get_docker_list_with_accept_excluding_lists(client, repo):
    # The reference registry resolves a list to its linux/amd64 image when
    # the client accepts only image manifests, or answers 404.
    amd = client.push_image(repo, None, docker=True)
    arm = client.push_image(repo, None, docker=True)
    mlist = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        arm.descriptor(platform={"architecture": "arm64", "os": "linux"}),
        amd.descriptor(platform={"architecture": "amd64", "os": "linux"})]}
    pushed = client.push_manifest(repo, "list", mlist, DOCKER_LIST)
    resp = _get(client, repo, "list", accept=DOCKER_MANIFEST)
    if resp.status_code == 200:
        if resp.headers["Content-Type"] == DOCKER_LIST:
            assert resp.content == pushed.body
        else:
            assert resp.headers["Content-Type"] == DOCKER_MANIFEST
            assert resp.content == amd.body
            assert resp.headers["Docker-Content-Digest"] == amd.digest
    elif resp.status_code == 404:
        assert_error(resp, 404, "MANIFEST_UNKNOWN")
    else:
        assert resp.status_code == 406, (resp.status_code, resp.text)


def test_get_with_wildcard_accept(client, repo):
    pushed = client.push_image(repo, "any")
    resp = _get(client, repo, "any", accept="*/*")
    assert resp.status_code == 200
    assert resp.content == pushed.body
    assert resp.headers["Content-Type"] == OCI_MANIFEST


def test_get_with_accept_quality_values_and_spaces(client, repo):
    pushed = client.push_image(repo, "q")
    resp = _get(client, repo, "q", accept=f"{DOCKER_MANIFEST};q=0.9 ,  {OCI_MANIFEST} ; q=0.5")
    assert resp.status_code == 200
    assert resp.content == pushed.body


def test_get_by_digest_is_byte_identical(client, repo):
    pushed = client.push_image(repo, "bytes", layers=3, annotations={"org.example": "é ü ✓"})
    resp = _get(client, repo, pushed.digest)
    assert resp.content == pushed.body
    assert digest_of(resp.content) == pushed.digest


# -- subject (OCI "Pushing Manifests with Subject") -------------------------------


def test_manifest_with_subject_is_accepted_before_its_subject(client, repo):
    # "A registry MUST initially accept an otherwise valid manifest with a
    # subject field that references a manifest that does not exist".
    ghost = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "ghost": unique_tag()})
    subject = descriptor(OCI_MANIFEST, ghost)
    pushed = client.push_artifact(repo, subject, "application/vnd.example.sig")
    assert pushed.response.headers.get("OCI-Subject") == subject["digest"]
    _assert_stored(client, pushed, pushed.digest)


# -- other digest algorithms ------------------------------------------------------


def test_put_manifest_by_sha512_digest(client, repo):
    # OCI "Pushing Manifests": the Docker-Content-Digest "MUST be equal to
    # the client provided digest", so pushing by a sha512 digest makes the
    # manifest addressable by it.
    body = canonical(_image_manifest(client, repo))
    dig = digest_of(body, "sha512")
    resp = client.put_manifest(repo, dig, body, OCI_MANIFEST)
    assert resp.status_code == 201, resp.text
    assert resp.headers.get("Docker-Content-Digest") == dig
    got = _get(client, repo, dig)
    assert got.status_code == 200 and got.content == body
    assert got.headers["Docker-Content-Digest"] == dig


def test_put_manifest_by_sha512_digest_with_tag(client, repo):
    # v1.1.1 end-7 tag parameters, "also can be used when pushing tags for a
    # non-canonical algorithm".
    body = canonical(_image_manifest(client, repo))
    dig = digest_of(body, "sha512")
    resp = client.put_manifest(repo, dig, body, OCI_MANIFEST, params=[("tag", "s512")])
    assert resp.status_code == 201, resp.text
    assert header_list(resp, "OCI-Tag") == ["s512"]
    got = _get(client, repo, "s512")
    assert got.status_code == 200 and got.content == body


def test_put_manifest_by_sha512_digest_mismatch(client, repo):
    body = canonical(_image_manifest(client, repo))
    resp = client.put_manifest(repo, digest_of(body + b"\n", "sha512"), body, OCI_MANIFEST)
    assert_error(resp, 400, "DIGEST_INVALID")


def test_manifest_without_media_type_field(client, repo):
    # mediaType is a SHOULD in the image spec; without it the Content-Type
    # decides, and the manifest is served back with that type.
    manifest = _image_manifest(client, repo)
    del manifest["mediaType"]
    pushed = client.push_manifest(repo, "nomt", manifest, OCI_MANIFEST)
    _assert_stored(client, pushed, "nomt")
