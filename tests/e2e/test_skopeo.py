"""End to end with a real client: skopeo pushes, pulls, copies, lists and
deletes images on a live registry, and what comes back is byte-identical."""

from __future__ import annotations

import json

import requests

from cargohold.testing.images import (DOCKER_LAYER_GZIP, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, build_image, build_index,
                     read_blobs, sha256, tagged)

ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST])


def get_manifest(registry, repository: str, reference: str, accept: str = ACCEPT) -> requests.Response:
    return requests.get(f"{registry.url}/v2/{repository}/manifests/{reference}",
                        headers={"Accept": accept}, timeout=30)


def assert_same_blobs(expected: dict[str, bytes], got: dict[str, bytes]) -> None:
    assert sorted(got) == sorted(expected)
    for digest, data in expected.items():
        assert got[digest] == data, f"{digest} differs"
        assert sha256(got[digest]) == digest


def test_multilayer_image_round_trip(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "v1", layers=4, seed="round-trip")
    remote = skopeo.docker("e2e/round-trip", "v1")

    skopeo.copy(image.ref, remote, "--preserve-digests")
    skopeo.copy(remote, f"oci:{tmp_path / 'back'}:v1", "--preserve-digests")

    assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
    assert_same_blobs(read_blobs(image.path), read_blobs(tmp_path / "back"))
    resp = get_manifest(registry, "e2e/round-trip", "v1")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == OCI_MANIFEST
    assert resp.headers["Docker-Content-Digest"] == image.digest
    assert resp.content == read_blobs(image.path)[image.digest]


def test_multi_arch_index_round_trip(tmp_path, registry, skopeo):
    index = build_index(tmp_path / "src", "multi", archs=("amd64", "arm64"), seed="multi-arch")
    remote = skopeo.docker("e2e/multi-arch", "multi")

    skopeo.copy(index.ref, remote, "--all", "--preserve-digests")
    skopeo.copy(remote, f"oci:{tmp_path / 'back'}:multi", "--all", "--preserve-digests")

    assert tagged(tmp_path / "back", "multi")["digest"] == index.digest
    assert_same_blobs(read_blobs(index.path), read_blobs(tmp_path / "back"))
    raw = skopeo.inspect(remote, "--raw").stdout.encode()
    assert sha256(raw) == index.digest
    platforms = {m["platform"]["architecture"] for m in json.loads(raw)["manifests"]}
    assert platforms == {"amd64", "arm64"}
    arm64 = skopeo.inspect_json(remote, "--override-arch", "arm64")
    assert arm64["Architecture"] == "arm64"


def test_copy_between_repositories(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "1", layers=3, seed="cross-repo")
    source, target = skopeo.docker("e2e/mount-a", "1"), skopeo.docker("e2e/mount-b", "1")
    skopeo.copy(image.ref, source, "--preserve-digests")

    # The layers are already in the registry under e2e/mount-a: skopeo mounts
    # them into e2e/mount-b (POST ...?mount=<digest>&from=e2e/mount-a) instead
    # of uploading them again; its debug log says so once per layer.
    copied = skopeo.copy(source, target, "--preserve-digests", debug=True)

    manifest = json.loads(read_blobs(image.path)[image.digest])
    assert copied.stderr.count("mount OK") == len(manifest["layers"]), "layers were uploaded, not mounted"
    assert skopeo.inspect_json(target)["Digest"] == image.digest
    for desc in [manifest["config"], *manifest["layers"]]:
        resp = requests.head(f"{registry.url}/v2/e2e/mount-b/blobs/{desc['digest']}", timeout=30)
        assert resp.status_code == 200, desc["digest"]
        assert int(resp.headers["Content-Length"]) == desc["size"]
    skopeo.copy(target, f"oci:{tmp_path / 'back'}:1", "--preserve-digests")
    assert_same_blobs(read_blobs(image.path), read_blobs(tmp_path / "back"))


def test_docker_schema2_push(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "v1", layers=3, seed="docker-v2s2")
    remote = skopeo.docker("e2e/docker", "v1")

    skopeo.copy(image.ref, remote, "--format", "v2s2")

    resp = get_manifest(registry, "e2e/docker", "v1", accept=DOCKER_MANIFEST)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == DOCKER_MANIFEST
    assert resp.headers["Docker-Content-Digest"] == sha256(resp.content)
    manifest = resp.json()
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER_GZIP] * 3
    info = skopeo.inspect_json(remote)
    assert info["Digest"] == resp.headers["Docker-Content-Digest"]
    assert info["Architecture"] == "amd64"
    assert len(info["Layers"]) == 3
    assert skopeo.inspect(remote, "--raw").stdout.encode() == resp.content


def test_list_tags(tmp_path, skopeo):
    image = build_image(tmp_path / "src", "1.0", layers=3, seed="tags")
    skopeo.copy(image.ref, skopeo.docker("e2e/tags", "1.0"), "--preserve-digests")
    for tag in ("1.1", "latest"):
        skopeo.copy(skopeo.docker("e2e/tags", "1.0"), skopeo.docker("e2e/tags", tag), "--preserve-digests")

    listing = json.loads(skopeo.run("list-tags", "--tls-verify=false", f"docker://{skopeo.host}/e2e/tags").stdout)

    assert listing["Repository"].endswith("e2e/tags")
    assert sorted(listing["Tags"]) == ["1.0", "1.1", "latest"]


def test_delete(tmp_path, registry, skopeo):
    image = build_image(tmp_path / "src", "v1", layers=3, seed="delete")
    remote = skopeo.docker("e2e/delete", "v1")
    skopeo.copy(image.ref, remote, "--preserve-digests")
    assert skopeo.inspect_json(remote)["Digest"] == image.digest

    skopeo.run("delete", "--tls-verify=false", remote)

    gone = skopeo.inspect(remote, check=False)
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower()
    assert get_manifest(registry, "e2e/delete", image.digest).status_code == 404
    assert get_manifest(registry, "e2e/delete", "v1").status_code == 404
