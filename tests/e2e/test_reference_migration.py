"""Migrating from the reference registry: cargohold serves the reference's
storage as it lies, and the reference serves cargohold's.  The reference is
Debian's ``docker-registry`` package, run live on loopback
(:class:`cargohold.testing.services.ReferenceRegistry`); skopeo pushes
through one and pulls through the other, and every manifest and blob comes
back byte-identical, with the same digests and media types."""

from __future__ import annotations

import json

import requests

from cargohold.testing.images import (DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, build_image, build_index, read_blobs,
                                      sha256, tagged)
from cargohold.testing.server import LiveRegistry
from cargohold.testing.services import ReferenceRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def skopeo_for(registry, home) -> Skopeo:
    home.mkdir()
    return Skopeo(find_skopeo(), home, registry)


def push_images(skopeo: Skopeo, tmp_path, seed: str) -> dict[str, object]:
    """An OCI image, a two-platform OCI index and a Docker schema2 image
    (converted by skopeo), pushed through ``skopeo``'s registry; returns
    the source layouts by ``repository:tag``."""
    image = build_image(tmp_path / f"{seed}-image", "v1", layers=3, seed=seed)
    index = build_index(tmp_path / f"{seed}-index", "multi", archs=("amd64", "arm64"), seed=seed)
    skopeo.copy(image.ref, skopeo.docker("mig/app", "v1"), "--preserve-digests")
    skopeo.copy(index.ref, skopeo.docker("mig/app", "multi"), "--all", "--preserve-digests")
    skopeo.copy(image.ref, skopeo.docker("mig/team/docker", "v2s2"), "--format", "v2s2")
    return {"mig/app:v1": image, "mig/app:multi": index}


def served(url: str, repository: str, reference: str) -> dict[str, tuple[str, bytes]]:
    """Everything ``reference`` reaches, as the registry at ``url`` serves
    it: ``{digest: (content type, bytes)}`` for the manifest, child
    manifests, configs and layers, each checked against its digest."""
    resp = requests.get(f"{url}/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=30)
    assert resp.status_code == 200, (url, repository, reference, resp.text)
    digest = resp.headers["Docker-Content-Digest"]
    assert sha256(resp.content) == digest
    out = {digest: (resp.headers["Content-Type"], resp.content)}
    doc = json.loads(resp.content)
    for child in doc.get("manifests", []):
        out.update(served(url, repository, child["digest"]))
    for blob in [doc["config"], *doc["layers"]] if "config" in doc else []:
        got = requests.get(f"{url}/v2/{repository}/blobs/{blob['digest']}", timeout=30)
        assert got.status_code == 200 and sha256(got.content) == blob["digest"], (url, blob)
        assert len(got.content) == blob["size"]
        out[blob["digest"]] = ("blob", got.content)
    return out


def listing(url: str) -> dict:
    catalog = requests.get(f"{url}/v2/_catalog", timeout=30).json()["repositories"]
    return {name: sorted(requests.get(f"{url}/v2/{name}/tags/list", timeout=30).json()["tags"])
            for name in catalog}


def assert_same_registry(source, target, refs: list[str]) -> None:
    """``target`` lists and serves every one of ``refs`` as ``source`` does,
    byte for byte."""
    assert listing(target.url) == listing(source.url)
    for ref in refs:
        repository, tag = ref.rsplit(":", 1)
        expected = served(source.url, repository, tag)
        assert served(target.url, repository, tag) == expected, ref


def assert_pulls_identical(skopeo: Skopeo, images: dict, tmp_path) -> None:
    """A real client pulls every image from ``skopeo``'s registry into an
    OCI layout identical to the one it was pushed from."""
    for ref, image in images.items():
        repository, tag = ref.rsplit(":", 1)
        dest = tmp_path / f"pulled-{repository.replace('/', '-')}-{tag}"
        skopeo.copy(skopeo.docker(repository, tag), f"oci:{dest}:{tag}", "--all", "--preserve-digests")
        assert tagged(dest, tag)["digest"] == image.digest
        assert read_blobs(dest) == read_blobs(image.path)


REFS = ["mig/app:v1", "mig/app:multi", "mig/team/docker:v2s2"]


def test_pushed_through_the_reference_pulled_identical_through_cargohold(tmp_path):
    with ReferenceRegistry(root=tmp_path / "storage") as reference:
        images = push_images(skopeo_for(reference, tmp_path / "home-ref"), tmp_path, "from-reference")
        with LiveRegistry(root=reference.cargohold_root) as cargohold:
            assert_same_registry(reference, cargohold, REFS)
            skopeo = skopeo_for(cargohold, tmp_path / "home-cargohold")
            assert_pulls_identical(skopeo, images, tmp_path)

            # Still one storage: what cargohold adds there, the reference serves.
            skopeo.copy(images["mig/app:v1"].ref, skopeo.docker("mig/app", "v1-again"), "--preserve-digests")
            assert_same_registry(cargohold, reference, REFS + ["mig/app:v1-again"])


def test_pushed_through_cargohold_pulled_identical_through_the_reference(tmp_path):
    storage = tmp_path / "storage"
    with LiveRegistry(root=str(storage / "docker" / "registry")) as cargohold:
        images = push_images(skopeo_for(cargohold, tmp_path / "home-cargohold"), tmp_path, "from-cargohold")
        with ReferenceRegistry(root=storage) as reference:
            assert reference.cargohold_root == cargohold.root
            assert_same_registry(cargohold, reference, REFS)
            skopeo = skopeo_for(reference, tmp_path / "home-ref")
            assert_pulls_identical(skopeo, images, tmp_path)

            skopeo.copy(images["mig/app:multi"].ref, skopeo.docker("mig/app", "multi-again"), "--all",
                        "--preserve-digests")
            assert_same_registry(reference, cargohold, REFS + ["mig/app:multi-again"])


def test_upload_sessions_the_reference_left_are_refused_and_purged_by_their_age(tmp_path):
    from cargohold.app import create_app

    with ReferenceRegistry(root=tmp_path / "storage") as reference:
        started = requests.post(f"{reference.url}/v2/mig/app/blobs/uploads/", timeout=10)
        assert started.status_code == 202
        uuid = started.headers["Docker-Upload-UUID"]
    app = create_app({"storage": {"filesystem": {"rootdirectory": reference.cargohold_root}}}, environ={})
    try:
        # A client continuing it on cargohold is told to start over.
        resp = app.test_client().patch(f"/v2/mig/app/blobs/uploads/{uuid}", data=b"more")
        assert resp.status_code == 400 and resp.get_json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
        uploads = app.extensions["cargohold"].registry.uploads
        assert uploads.purge(3600, dry_run=True) == []  # started moments ago: kept
        assert uploads.purge(0) == [f"/v2/repositories/mig/app/_uploads/{uuid}"]
    finally:
        app.cargohold_shutdown()
    assert not (tmp_path / "storage" / "docker" / "registry" / "v2" / "repositories" / "mig" / "app" / "_uploads"
                / uuid).exists()
