"""Expiry of the pull-through cache: ``cargohold proxy purge`` unlinks what
was not pulled within the upstream's ``ttl``, an image sharing blobs with
an expired one keeps working (even with the upstream gone), and the
reference registry's garbage collector, run on the mirror's storage, then
removes the bytes only the expired image used."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time

import yaml

from cargohold.storage import paths
from cargohold.testing.images import OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, LayoutWriter, read_blobs, tar_gz
from cargohold.testing.server import LiveRegistry
from cargohold.testing.services import ReferenceRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

TTL = 4.0


def two_images_sharing_a_layer(path):
    """Images ``a`` and ``b`` in one layout: ``b`` has ``a``'s first layer
    and one of its own.  Returns their manifests."""
    writer = LayoutWriter(path)
    a_desc = writer.image(layers=2, seed="expiry-a")
    blobs = path / "blobs" / "sha256"
    a = json.loads((blobs / a_desc["digest"].split(":")[1]).read_bytes())
    a_config = json.loads((blobs / a["config"]["digest"].split(":")[1]).read_bytes())
    own, own_diff = tar_gz({"b/own.txt": b"only in image b\n" * 1000})
    b_config = copy.deepcopy(a_config)
    b_config["config"]["Env"] = ["SEED=expiry-b"]
    b_config["rootfs"]["diff_ids"] = [a_config["rootfs"]["diff_ids"][0], own_diff]
    b_config["history"] = b_config["history"][:2]
    b = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": writer.json_blob(b_config, OCI_CONFIG),
         "layers": [a["layers"][0], writer.blob(own, OCI_LAYER_GZIP)]}
    b_desc = writer.json_blob(b, OCI_MANIFEST)
    images = {"a": writer.tag("a", a_desc), "b": writer.tag("b", b_desc)}
    return images, {"a": a, "b": b}


def linked(root: str, repository: str, digest: str) -> bool:
    return os.path.exists(root + paths.layer_link(repository, digest))


def test_expired_image_is_unlinked_and_collected_the_sharing_one_keeps_working(tmp_path):
    images, manifests = two_images_sharing_a_layer(tmp_path / "src")
    shared = manifests["a"]["layers"][0]["digest"]
    only_a = [manifests["a"]["config"]["digest"], manifests["a"]["layers"][1]["digest"]]
    only_b = [manifests["b"]["config"]["digest"], manifests["b"]["layers"][1]["digest"]]
    reference = ReferenceRegistry()  # for its garbage collector, on the mirror's storage
    conf = tmp_path / "mirror.yml"
    with LiveRegistry() as upstream:
        conf.write_text(yaml.safe_dump({"version": "0.1", "proxy": {"upstreams": [
            {"url": upstream.url, "prefix": "up/", "ttl": f"{TTL}s", "timeout": "3s"}]}}))
        mirror = LiveRegistry(config_file=str(conf), root=reference.cargohold_root)
        with mirror:
            to_upstream = Skopeo(find_skopeo(), _home(tmp_path, "up"), upstream)
            via_mirror = Skopeo(find_skopeo(), _home(tmp_path, "mirror"), mirror)
            for tag, image in images.items():
                to_upstream.copy(image.ref, to_upstream.docker("team/share", tag), "--preserve-digests")
            via_mirror.copy(via_mirror.docker("up/team/share", "a"), f"oci:{tmp_path / 'a1'}:a", "--preserve-digests")
            time.sleep(TTL + 0.5)
            via_mirror.copy(via_mirror.docker("up/team/share", "b"), f"oci:{tmp_path / 'b1'}:b", "--preserve-digests")

            purge = subprocess.run([sys.executable, "-m", "cargohold", "proxy", "purge", "--config", str(conf)],
                                   env={**os.environ, **mirror.env}, capture_output=True, text=True, timeout=60)
            assert purge.returncode == 0, purge.stderr
            unlinked = set(purge.stdout.split())
            repo = "up/team/share"
            assert unlinked == {f"{repo}@{d}" for d in [images["a"].digest, *only_a]}, purge.stdout
            root = mirror.root
            assert not os.path.exists(root + paths.manifest_revision_link(repo, images["a"].digest))
            assert not os.path.exists(root + paths.tag_link(repo, "a"))
            assert not any(linked(root, repo, d) for d in only_a)
            assert linked(root, repo, shared) and all(linked(root, repo, d) for d in only_b)

            # The image sharing a blob with the expired one still pulls whole,
            # from the cache alone.
            upstream.stop()
            via_mirror.copy(via_mirror.docker("up/team/share", "b"), f"oci:{tmp_path / 'b2'}:b", "--preserve-digests")
            assert read_blobs(tmp_path / "b2") == read_blobs(tmp_path / "b1")

    # Unlinked is collectable: the reference's garbage collector removes the
    # bytes only the expired image used, and keeps the shared ones.
    reference.garbage_collect()
    try:
        for digest in [*only_a, images["a"].digest]:
            assert not os.path.exists(reference.cargohold_root + paths.blob_data(digest)), digest
        for digest in [shared, *only_b, images["b"].digest]:
            assert os.path.exists(reference.cargohold_root + paths.blob_data(digest)), digest
    finally:
        reference.cleanup()


def _home(tmp_path, name):
    home = tmp_path / f"skopeo-{name}"
    home.mkdir()
    return home
