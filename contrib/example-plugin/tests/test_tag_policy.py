"""The tag policy on a live registry: denied tags get 403 DENIED, others pass."""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import entry_points
from urllib.parse import urljoin

import pytest
import requests

from cargohold.testing.server import LiveRegistry

CONFIG = """\
tagpolicy:
  deny: ["^latest$", "^tmp-"]
"""


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True, scope="module")
def plugin_installed():
    if not any(ep.value == "cargohold_tag_policy" for ep in entry_points(group="cargohold")):
        pytest.fail("cargohold-tag-policy is not installed: pip install -e contrib/example-plugin", pytrace=False)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A live registry denying ``latest`` and ``tmp-*``."""
    config = tmp_path_factory.mktemp("tagpolicy") / "config.yml"
    config.write_text(CONFIG)
    with LiveRegistry(config_file=str(config)) as live:
        yield live


def push_image_config(url: str, repository: str) -> bytes:
    """Upload an image config to ``repository``; return a manifest referencing it."""
    config = b'{"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}'
    start = requests.post(f"{url}/v2/{repository}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    done = requests.put(urljoin(url, start.headers["Location"]), params={"digest": digest(config)}, data=config,
                        headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert done.status_code == 201, done.text
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [],
    }).encode()


@pytest.fixture(scope="module")
def manifest(registry) -> bytes:
    return push_image_config(registry.url, "policy/app")


def put_manifest(registry, reference: str, body: bytes) -> requests.Response:
    """PUT ``body`` as ``policy/app:<reference>``."""
    return requests.put(f"{registry.url}/v2/policy/app/manifests/{reference}", data=body, timeout=10,
                        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


@pytest.mark.parametrize("tag, pattern", [("latest", "^latest$"), ("tmp-build-7", "^tmp-")])
def test_denied_tag(registry, manifest, tag, pattern):
    resp = put_manifest(registry, tag, manifest)

    assert resp.status_code == 403
    [error] = resp.json()["errors"]
    assert error["code"] == "DENIED"
    assert error["message"] == f"tag '{tag}' is not allowed by the tag policy"
    assert error["detail"] == {"tag": tag, "pattern": pattern}
    assert requests.get(f"{registry.url}/v2/policy/app/manifests/{tag}", timeout=10).status_code == 404


@pytest.mark.parametrize("reference", ["v1", "latest-stable", "my-tmp-tag"])
def test_allowed_tag(registry, manifest, reference):
    resp = put_manifest(registry, reference, manifest)

    assert resp.status_code == 201, resp.text
    assert resp.headers["Docker-Content-Digest"] == digest(manifest)


def test_push_by_digest_is_not_a_tag(registry, manifest):
    assert put_manifest(registry, digest(manifest), manifest).status_code == 201


def test_patterns_from_the_environment():
    with LiveRegistry(env={"CARGOHOLD_TAGPOLICY_DENY": "^release-,^rc$"}) as live:
        body = push_image_config(live.url, "policy/app")
        assert put_manifest(live, "release-1", body).status_code == 403
        assert put_manifest(live, "rc", body).status_code == 403
        assert put_manifest(live, "latest", body).status_code == 201


def test_invalid_pattern_fails_startup(tmp_path):
    config = tmp_path / "config.yml"
    config.write_text('tagpolicy:\n  deny: ["(unclosed"]\n')
    live = LiveRegistry(config_file=str(config))
    try:
        with pytest.raises(RuntimeError, match=r"\(unclosed"):
            live.start(timeout=10)
    finally:
        live.stop()
        live.cleanup()
