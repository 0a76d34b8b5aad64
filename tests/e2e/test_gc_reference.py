"""Garbage collection agrees with the reference registry's.

A store written by the reference registry (Debian's ``docker-registry``,
live on loopback) with shared base layers, a deleted image and a tag moved
off its manifest is collected twice: by the reference's own
``garbage-collect --delete-untagged`` and, on a byte-for-byte copy, by
``cargohold gc --delete-untagged``.  Dry runs name the same number of blobs;
real runs leave the same blobs behind, and the reference's dry run then
finds nothing more to do in the store cargohold collected."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import requests
import yaml

from cargohold.testing.images import build_image
from cargohold.testing.services import ReferenceRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

ACCEPT = "application/vnd.oci.image.manifest.v1+json"
ELIGIBLE_BLOB = re.compile(r"blob eligible for deletion: (sha256:[0-9a-f]{64})")


def blobs_in(root: str) -> set[str]:
    """The digests whose ``data`` lies under ``root``'s blob store."""
    found = set()
    for dirpath, _, files in os.walk(os.path.join(root, "v2", "blobs")):
        if "data" in files:
            found.add("sha256:" + os.path.basename(dirpath))
    return found


def cargohold_gc(tmp_path, root: str, *flags: str) -> dict:
    config = tmp_path / f"gc-{len(list(tmp_path.iterdir()))}.yml"
    config.write_text(yaml.safe_dump({
        "storage": {"filesystem": {"rootdirectory": root}, "delete": {"enabled": True},
                    "maintenance": {"gc": {"grace": "1s"}}},
    }))
    proc = subprocess.run([sys.executable, "-m", "cargohold", "gc", "--config", str(config), "--json",
                           "--delete-untagged", *flags],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cargohold_gc_sweeps_what_the_references_gc_sweeps(tmp_path):
    home = tmp_path / "skopeo-home"
    home.mkdir()
    reference = ReferenceRegistry(root=tmp_path / "reference")
    reference.start()
    try:
        skopeo = Skopeo(find_skopeo(), home, reference)
        # One image in two repositories (its blobs shared), one deleted, and
        # a tag pushed twice, which leaves its first manifest untagged.
        kept = build_image(tmp_path / "kept", "v1", layers=2, seed="kept")
        deleted = build_image(tmp_path / "deleted", "v1", layers=2, seed="deleted")
        first = build_image(tmp_path / "first", "v1", layers=2, seed="first")
        second = build_image(tmp_path / "second", "v1", layers=2, seed="second")
        skopeo.copy(kept.ref, skopeo.docker("gc/app", "stable"), "--preserve-digests")
        skopeo.copy(kept.ref, skopeo.docker("gc/mirror", "stable"), "--preserve-digests")
        skopeo.copy(deleted.ref, skopeo.docker("gc/app", "old"), "--preserve-digests")
        skopeo.copy(first.ref, skopeo.docker("gc/app", "moving"), "--preserve-digests")
        skopeo.copy(second.ref, skopeo.docker("gc/app", "moving"), "--preserve-digests")  # first: untagged
        head = requests.head(f"{reference.url}/v2/gc/app/manifests/old", headers={"Accept": ACCEPT}, timeout=30)
        digest = head.headers["Docker-Content-Digest"]
        assert requests.delete(f"{reference.url}/v2/gc/app/manifests/{digest}", timeout=30).status_code == 202
    finally:
        reference.stop()
    time.sleep(2)  # older than the collector's 1 s grace

    copy_root = str(tmp_path / "copy")
    shutil.copytree(reference.root, copy_root, symlinks=True)
    cargohold_root = os.path.join(copy_root, "docker", "registry")
    before = blobs_in(reference.cargohold_root)
    assert blobs_in(cargohold_root) == before

    eligible = set(ELIGIBLE_BLOB.findall(reference.garbage_collect(dry_run=True, delete_untagged=True)))
    # The deleted image's and the untagged image's manifest, config and layers.
    assert len(eligible) == 8, eligible
    dry = cargohold_gc(tmp_path, cargohold_root, "--dry-run")
    assert dry["blobs_swept"] == len(eligible)
    assert blobs_in(cargohold_root) == before  # a dry run changes nothing

    reference.garbage_collect(delete_untagged=True)
    report = cargohold_gc(tmp_path, cargohold_root)
    assert report["blobs_swept"] == len(eligible)
    assert blobs_in(cargohold_root) == blobs_in(reference.cargohold_root) == before - eligible

    # The reference accepts the store cargohold collected: nothing left for it.
    after = ReferenceRegistry(root=copy_root)
    try:
        assert ELIGIBLE_BLOB.findall(after.garbage_collect(dry_run=True, delete_untagged=True)) == []
    finally:
        after.cleanup()
        reference.cleanup()
