"""Parsing and validating pushed manifests."""

import hashlib
import json

import pytest

from cargohold.errors import ManifestInvalid
from cargohold.manifests import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    media_type_of,
    parse,
)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(b"config"), "size": 6}
LAYER = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(b"layer"), "size": 5}
EXAMPLE = "application/vnd.example+json"
CHILD = {"mediaType": OCI_MANIFEST, "digest": digest(b"child"), "size": 5,
         "platform": {"architecture": "arm64", "os": "linux"}}


def image(media_type=OCI_MANIFEST, **extra) -> dict:
    doc = {"schemaVersion": 2, "config": dict(CONFIG), "layers": [dict(LAYER)]}
    if media_type:
        doc["mediaType"] = media_type
    doc.update(extra)
    return doc


def index(media_type=OCI_INDEX, **extra) -> dict:
    doc = {"schemaVersion": 2, "manifests": [dict(CHILD)]}
    if media_type:
        doc["mediaType"] = media_type
    doc.update(extra)
    return doc


def raw(doc) -> bytes:
    return json.dumps(doc).encode()


def invalid(body, content_type=None) -> ManifestInvalid:
    with pytest.raises(ManifestInvalid) as info:
        parse(body if isinstance(body, bytes) else raw(body), content_type)
    assert (info.value.status, info.value.code) == (400, "MANIFEST_INVALID")
    return info.value


@pytest.mark.parametrize("doc,media_type", [
    (image(OCI_MANIFEST), OCI_MANIFEST),
    (image(DOCKER_MANIFEST), DOCKER_MANIFEST),
    (index(OCI_INDEX), OCI_INDEX),
    (index(DOCKER_LIST), DOCKER_LIST),
])
def test_each_media_type_by_content_type_and_body(doc, media_type):
    body = raw(doc)
    for content_type in (media_type, f"{media_type}; charset=utf-8", None, "application/json"):
        m = parse(body, content_type)
        assert m.media_type == media_type
        assert m.raw == body and m.data == doc
        assert m.digest == digest(body)
        assert m.is_index == (media_type in (OCI_INDEX, DOCKER_LIST))


def test_image_references():
    m = parse(raw(image()), OCI_MANIFEST)
    assert m.blob_references() == [
        Descriptor(CONFIG["mediaType"], CONFIG["digest"], 6),
        Descriptor(LAYER["mediaType"], LAYER["digest"], 5),
    ]
    assert m.manifest_references() == []


def test_index_references():
    m = parse(raw(index()), OCI_INDEX)
    assert m.manifest_references() == [Descriptor(OCI_MANIFEST, CHILD["digest"], 5)]
    assert m.blob_references() == []


@pytest.mark.parametrize("content_type", [None, "", "application/json", "application/octet-stream", "text/plain"])
def test_media_type_inferred_without_media_type_field(content_type):
    assert parse(raw(image(None)), content_type).media_type == OCI_MANIFEST
    assert parse(raw(index(None)), content_type).media_type == OCI_INDEX


def test_content_type_names_the_type_when_body_does_not():
    assert parse(raw(image(None)), DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    assert parse(raw(index(None)), DOCKER_LIST).media_type == DOCKER_LIST


def test_media_type_of_stored_documents():
    assert media_type_of({"mediaType": DOCKER_LIST, "manifests": []}) == DOCKER_LIST
    assert media_type_of({"manifests": []}) == OCI_INDEX
    assert media_type_of({"config": {}}) == OCI_MANIFEST
    assert media_type_of({"mediaType": "", "config": {}}) == OCI_MANIFEST


@pytest.mark.parametrize("content_type,doc", [
    ("application/vnd.docker.distribution.manifest.v1+json", image(None)),
    ("application/vnd.docker.distribution.manifest.v1+prettyjws", image(None)),
    (None, {"schemaVersion": 1, "name": "app", "tag": "v1", "fsLayers": [], "history": []}),
    (None, image("application/vnd.docker.distribution.manifest.v1+prettyjws")),
    (OCI_MANIFEST, image(None, schemaVersion=1)),
])
def test_schema1_is_refused(content_type, doc):
    assert "schema1" in invalid(doc, content_type).message


def test_subject_artifact_type_and_annotations():
    subject = {"mediaType": OCI_MANIFEST, "digest": digest(b"subject"), "size": 7}
    m = parse(raw(image(subject=subject, annotations={"a": "b"})), OCI_MANIFEST)
    assert m.subject == Descriptor(OCI_MANIFEST, subject["digest"], 7)
    assert m.artifact_type == CONFIG["mediaType"]
    assert m.annotations == {"a": "b"}

    m = parse(raw(image(artifactType="application/x-sig", annotations={})), OCI_MANIFEST)
    assert m.subject is None and m.artifact_type == "application/x-sig" and m.annotations is None
    assert parse(raw(index()), OCI_INDEX).artifact_type is None
    assert parse(raw(index(artifactType="application/x-set")), OCI_INDEX).artifact_type == "application/x-set"


def test_descriptor_extras_are_kept():
    layer = dict(LAYER, urls=["https://example.com/l"], annotations={"k": "v"}, artifactType="x/y")
    [_, d] = parse(raw(image(layers=[layer])), OCI_MANIFEST).blob_references()
    assert d.urls == ("https://example.com/l",) and d.annotations == {"k": "v"} and d.artifact_type == "x/y"


@pytest.mark.parametrize("body,content_type,message", [
    (b"not json", None, "manifest is not valid JSON"),
    (b"\xff\xfe{}", None, "manifest is not valid JSON"),
    (b"[]", None, "manifest must be a JSON object"),
    (b"null", None, "manifest must be a JSON object"),
    (raw(image(5)), None, "mediaType must be a string"),
    (raw(image(None, schemaVersion="2")), None, "schemaVersion must be 2"),
    (raw(image(None, schemaVersion=3)), None, "schemaVersion must be 2"),
    (raw({k: v for k, v in image().items() if k != "schemaVersion"}), None, "schemaVersion must be 2"),
    (raw(image(None)), "application/vnd.example+json", f"unsupported manifest media type {EXAMPLE!r}"),
    (raw(image(EXAMPLE)), None, f"unsupported manifest media type {EXAMPLE!r}"),
    (raw(image(OCI_MANIFEST)), DOCKER_MANIFEST, "Content-Type does not match the manifest's mediaType"),
    (raw(index(OCI_INDEX)), OCI_MANIFEST, "Content-Type does not match the manifest's mediaType"),
    (raw(image(config=None)), None, "an image manifest must have a 'config' descriptor"),
    (raw(image(config=[])), None, "an image manifest must have a 'config' descriptor"),
    (raw(image(layers={})), None, "'layers' must be a list"),
    (raw(image(layers=[LAYER, "x"])), None, "layers[1]: descriptor must be an object"),
    (raw(image(layers=[dict(LAYER, size="5")])), None, "layers[0]: size must be a non-negative integer"),
    (raw(image(layers=[dict(LAYER, size=-1)])), None, "layers[0]: size must be a non-negative integer"),
    (raw(image(layers=[dict(LAYER, size=True)])), None, "layers[0]: size must be a non-negative integer"),
    (raw(image(layers=[dict(LAYER, size=1.0)])), None, "layers[0]: size must be a non-negative integer"),
    (raw(image(layers=[dict(LAYER, digest=None)])), None, "layers[0]: digest is required"),
    (raw(image(layers=[dict(LAYER, digest="md5:abc")])), None, "layers[0]: invalid digest"),
    (raw(image(layers=[dict(LAYER, mediaType="")])), None, "layers[0]: mediaType is required"),
    (raw(image(layers=[dict(LAYER, urls="https://x")])), None, "layers[0]: urls must be a list"),
    (raw(image(config=dict(CONFIG, digest=5))), None, "config: digest is required"),
    (raw(index(manifests={})), None, "an index must have a 'manifests' list"),
    (raw(index(manifests=[dict(CHILD, size=None)])), None, "manifests[0]: size must be a non-negative integer"),
    (raw(image(subject="sha256:x")), None, "subject: descriptor must be an object"),
    (raw(image(subject={"mediaType": OCI_MANIFEST, "size": 1})), None, "subject: digest is required"),
    (raw(image(artifactType=["a"])), None, "artifactType must be a string"),
    (raw(image(annotations=["a"])), None, "annotations must be an object"),
])
def test_validation_messages(body, content_type, message):
    assert invalid(body, content_type).message == message


def test_invalid_digest_detail_names_the_digest():
    error = invalid(image(layers=[dict(LAYER, digest="sha256:" + "A" * 64)]))
    assert error.detail == {"digest": "sha256:" + "A" * 64}


def test_deeply_nested_json_is_invalid_not_a_crash():
    invalid(b"[" * 100_000 + b"]" * 100_000)


def test_digest_uses_the_requested_algorithm():
    body = raw(image())
    assert parse(body, OCI_MANIFEST, "sha512").digest == "sha512:" + hashlib.sha512(body).hexdigest()


def test_digest_is_of_the_exact_bytes():
    compact = json.dumps(image(), separators=(",", ":")).encode()
    pretty = json.dumps(image(), indent=3).encode()
    assert parse(compact, None).digest == digest(compact)
    assert parse(pretty, None).digest == digest(pretty)
    assert digest(compact) != digest(pretty)


# -- memory a manifest can make the parser hold -------------------------------

FOUR_MIB = 4 << 20


def _peak_while(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("element", [b"{}", b"[]", b'"ab"', b"0"])
def test_a_manifest_of_tiny_values_is_refused_before_it_is_parsed(element):
    # 4 MiB of "{}" decode into 1.4 million dicts: ~100 MiB for one request.
    body = b'{"schemaVersion":2,"x":[' + b",".join([element] * (FOUR_MIB // (len(element) + 1) - 20)) + b"]}"
    assert len(body) <= FOUR_MIB
    error = None

    def attempt():
        nonlocal error
        error = invalid(body)

    assert _peak_while(attempt) < FOUR_MIB  # nothing decoded, nothing copied
    assert "JSON values" in error.message


def test_commas_and_brackets_inside_strings_do_not_count():
    # A large annotation full of punctuation (embedded JSON, CSV) is one value.
    text = "[{},{}]," * (FOUR_MIB // 16)
    doc = image(annotations={"org.example.data": text})
    assert parse(raw(doc), OCI_MANIFEST).data["annotations"]["org.example.data"] == text


def test_an_index_of_thousands_of_manifests_is_fine():
    children = [dict(CHILD, digest=digest(str(i).encode())) for i in range(5000)]
    assert len(parse(raw(index(manifests=children)), OCI_INDEX).manifest_references()) == 5000
