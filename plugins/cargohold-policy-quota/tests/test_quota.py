"""Quotas on a live registry, pushed with skopeo: usage is exactly the
distinct blob bytes of the namespace after pushes, deletes, a garbage
collection and a restart; pushes over a quota get 403 DENIED naming it,
before the bytes are stored when their size is known."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from importlib.metadata import entry_points

import pytest
import requests
import yaml

from cargohold.app import create_app
from cargohold.config import ConfigError
from cargohold.storage import paths
from cargohold.testing.images import LayoutWriter, read_blobs
from cargohold.testing.server import LiveRegistry, free_port
from cargohold.testing.skopeo import Skopeo, find_skopeo

LIMIT = 1 << 20
RULES = [{"namespace": "team-a/*", "bytes": "1MiB", "repositories": 2},
         {"namespace": "team-b/*", "repositories": 1}]
ENV = {"CARGOHOLD_STORAGE_MAINTENANCE_GC_GRACE": "1s"}


@pytest.fixture(autouse=True, scope="module")
def plugin_installed():
    if not any(ep.value == "cargohold_policy_quota" for ep in entry_points(group="cargohold")):
        pytest.fail("cargohold-policy-quota is not installed: pip install -e plugins/cargohold-policy-quota",
                    pytrace=False)


@pytest.fixture
def setup(tmp_path):
    """``(config file, storage root, port)`` of a registry with :data:`RULES`."""
    root = tmp_path / "root"
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump({
        "storage": {"filesystem": {"rootdirectory": str(root)}, "delete": {"enabled": True}},
        "policy": {"quota": {"refresh": "500ms", "rules": RULES}},
    }))
    return config, root, free_port()


def serve(setup) -> LiveRegistry:
    config, root, port = setup
    return LiveRegistry(config_file=str(config), root=str(root), port=port, env=ENV)


def image_bytes(layout, image) -> int:
    """The blob bytes (config and layers) of ``image`` in ``layout``."""
    blobs = read_blobs(layout)
    manifest = json.loads(blobs[image.digest])
    return sum(len(blobs[d["digest"]]) for d in [manifest["config"], *manifest["layers"]])


def usage(registry, namespace: str = "team-a/*") -> dict[str, int]:
    """The quota gauges of ``namespace`` from ``/metrics``."""
    text = requests.get(f"{registry.url}/metrics", timeout=30).text
    found = {}
    for name, value in re.findall(rf'^cargohold_quota_(\w+){{namespace="{re.escape(namespace)}"}} (\S+)$', text,
                                  re.MULTILINE):
        found[name] = int(float(value))
    return found


def wait_for_usage(registry, expected: int, timeout: float = 15.0) -> None:
    """Until the byte usage of team-a is ``expected`` (another process changed the storage)."""
    deadline = time.monotonic() + timeout
    while usage(registry)["bytes_used"] != expected:
        assert time.monotonic() < deadline, f"usage stayed {usage(registry)}, expected {expected} bytes"
        time.sleep(0.2)


def denied(resp: requests.Response) -> str:
    assert resp.status_code == 403, resp.text
    [error] = resp.json()["errors"]
    assert error["code"] == "DENIED"
    return error["message"]


def test_usage_is_exact_after_pushes_deletes_gc_and_a_restart(setup, tmp_path):
    writer = LayoutWriter(tmp_path / "layout")
    one = writer.tag("one", writer.image(layers=3, seed="one"))
    two = writer.tag("two", writer.image(layers=3, seed="two"))
    one_bytes, two_bytes = image_bytes(one.path, one), image_bytes(two.path, two)
    assert one_bytes + two_bytes < LIMIT

    with serve(setup) as live:
        (tmp_path / "home").mkdir()
        skopeo = Skopeo(find_skopeo(), tmp_path / "home", live)
        assert usage(live) == {"bytes_used": 0, "bytes_limit": LIMIT, "repositories_used": 0, "repositories_limit": 2}
        skopeo.copy(one.ref, skopeo.docker("team-a/app", "1"), "--preserve-digests")
        assert usage(live)["bytes_used"] == one_bytes
        # The same blobs in a second repository of the namespace count once.
        skopeo.copy(one.ref, skopeo.docker("team-a/app", "1b"), "--preserve-digests")
        skopeo.copy(two.ref, skopeo.docker("team-a/other", "2"), "--preserve-digests")
        assert usage(live)["bytes_used"] == one_bytes + two_bytes
        assert usage(live)["repositories_used"] == 2
        # Elsewhere is not team-a's.
        skopeo.copy(one.ref, skopeo.docker("team-b/app", "1"), "--preserve-digests")
        assert usage(live)["bytes_used"] == one_bytes + two_bytes

        # A blob pushed and deleted again.
        lone = b"lone blob" * 1000
        digest = "sha256:" + hashlib.sha256(lone).hexdigest()
        assert requests.post(f"{live.url}/v2/team-a/app/blobs/uploads/", params={"digest": digest}, data=lone,
                             timeout=30).status_code == 201
        assert usage(live)["bytes_used"] == one_bytes + two_bytes + len(lone)
        assert requests.delete(f"{live.url}/v2/team-a/app/blobs/{digest}", timeout=30).status_code == 202
        assert usage(live)["bytes_used"] == one_bytes + two_bytes

        # Deleting a manifest frees nothing by itself; the collector (another process) does.
        assert requests.delete(f"{live.url}/v2/team-a/other/manifests/{two.digest}", timeout=30).status_code == 202
        assert usage(live)["bytes_used"] == one_bytes + two_bytes
        time.sleep(1.5)  # past the collector's grace
        config, root, _ = setup
        gc = subprocess.run([sys.executable, "-m", "cargohold", "gc", "--config", str(config)],
                            env={**os.environ, **ENV}, capture_output=True, text=True, timeout=120)
        assert gc.returncode == 0, gc.stderr
        # The manifest, its config, its 3 layers and the lone blob; team-a/other is left empty and goes too.
        assert gc.stdout.startswith("swept 6 blobs"), gc.stdout
        assert "1 empty repositories" in gc.stdout
        wait_for_usage(live, one_bytes)
        assert usage(live)["repositories_used"] == 1

    with serve(setup) as again:  # usage is read back from the storage
        assert usage(again) == {"bytes_used": one_bytes, "bytes_limit": LIMIT, "repositories_used": 1,
                                "repositories_limit": 2}


def test_pushes_over_the_quota_are_refused(setup, tmp_path):
    config, root, _ = setup
    writer = LayoutWriter(tmp_path / "layout")
    small = writer.tag("small", writer.image(layers=2, seed="small"))
    big = writer.tag("big", writer.image(layers=1, seed="big", big_layer=LIMIT))

    with serve(setup) as live:
        (tmp_path / "home").mkdir()
        skopeo = Skopeo(find_skopeo(), tmp_path / "home", live)
        skopeo.copy(small.ref, skopeo.docker("team-a/app", "small"), "--preserve-digests")
        used = usage(live)["bytes_used"]

        # Size known up front (Content-Length): refused before any byte is stored.
        data = os.urandom(LIMIT - used + 1)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        message = denied(requests.post(f"{live.url}/v2/team-a/app/blobs/uploads/", params={"digest": digest},
                                       data=data, timeout=30))
        assert message.startswith("storage quota of 'team-a/*' exceeded")
        assert not (root / paths.blob_data(digest).lstrip("/")).exists()

        # skopeo streams its layers: refused once the blob is complete, nothing committed.
        pushed = skopeo.run("copy", "--dest-tls-verify=false", "--preserve-digests", big.ref,
                            skopeo.docker("team-a/app", "big"), check=False)
        assert pushed.returncode != 0
        assert "storage quota of 'team-a/*' exceeded" in pushed.stderr
        blobs = read_blobs(big.path)
        manifest = json.loads(blobs[big.digest])
        own = [d["digest"] for d in [manifest["config"], *manifest["layers"]]]
        big_layer = max(own, key=lambda d: len(blobs[d]))
        assert not (root / paths.blob_data(big_layer).lstrip("/")).exists()
        # The image's smaller blobs fit, and may have been pushed before the big one was refused.
        landed = [d for d in own if requests.head(
            f"{live.url}/v2/team-a/app/blobs/{d}", timeout=30).status_code == 200]
        assert big_layer not in landed
        assert usage(live)["bytes_used"] == used + sum(len(blobs[d]) for d in landed)
        assert list(root.glob("docker/registry/v2/repositories/team-a/app/_uploads/*")) == []

        # Blobs the namespace already has add nothing: a full namespace still takes them.
        skopeo.copy(small.ref, skopeo.docker("team-a/app", "again"), "--preserve-digests")

        # Repositories: team-b may have one.
        skopeo.copy(small.ref, skopeo.docker("team-b/one", "1"), "--preserve-digests")
        refused = skopeo.run("copy", "--dest-tls-verify=false", small.ref, skopeo.docker("team-b/two", "1"),
                             check=False)
        assert refused.returncode != 0
        assert "repository quota of 'team-b/*' exceeded: it has 1 of 1 repositories" in refused.stderr
        small_config = json.loads(read_blobs(small.path)[small.digest])["config"]["digest"]
        message = denied(requests.post(f"{live.url}/v2/team-b/three/blobs/uploads/",
                                       params={"mount": small_config, "from": "team-a/app"}, timeout=30))
        assert message.startswith("repository quota of 'team-b/*' exceeded")
        # Bytes are counted without a byte quota too; no limit is shown.
        assert usage(live, "team-b/*") == {"bytes_used": image_bytes(small.path, small), "repositories_used": 1,
                                           "repositories_limit": 1}


@pytest.mark.parametrize("rule, problem", [
    ({"bytes": "1MiB"}, "policy.quota.rules[0].namespace: required"),
    ({"namespace": "x/*"}, "policy.quota.rules[0]: give bytes, repositories or both"),
    ({"namespace": "x/*", "bytes": "lots"}, "policy.quota.rules[0].bytes"),
])
def test_bad_rules_fail_startup_naming_the_key(rule, problem):
    with pytest.raises(ConfigError) as info:
        create_app({"storage": {"inmemory": {}}, "policy": {"quota": {"rules": [rule]}}}, environ={})
    assert problem in str(info.value)
