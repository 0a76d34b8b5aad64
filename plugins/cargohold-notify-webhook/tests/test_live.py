"""Webhooks from a live ``cargohold serve`` to a real HTTP receiver, driven by
a real client (skopeo): the events of a push and a pull, and no event lost
when the registry is killed while the endpoint is down."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest
import yaml

from cargohold.events import ENVELOPE_MEDIA_TYPE
from cargohold.events.queue import DurableQueue
from cargohold.testing.images import build_image, read_blobs, tagged
from cargohold.testing.notifications import EventReceiver
from cargohold.testing.server import LiveRegistry, free_port
from cargohold.testing.skopeo import Skopeo, find_skopeo

SECRET = "s3cret-for-tests"


def write_config(path: Path, url: str, **endpoint) -> str:
    entry = {"name": "ci", "url": url, "timeout": "2s", "backoff": "100ms", "maxbackoff": "500ms",
             "headers": {"Authorization": ["Bearer test-token"]}, "signing": {"secret": SECRET}, **endpoint}
    path.write_text(yaml.safe_dump({"notifications": {"endpoints": [entry]}}))
    return str(path)


@pytest.fixture
def live(tmp_path):
    """Start registries on demand (same root across restarts); all stopped at the end."""
    started: list[LiveRegistry] = []
    root = tmp_path / "root"
    root.mkdir()

    def start(config_file: str, env: dict | None = None) -> LiveRegistry:
        registry = LiveRegistry(config_file=config_file, root=str(root), env=env)
        started.append(registry)
        return registry.start()

    yield start
    for registry in started:
        registry.stop()
        registry.cleanup()


def skopeo_for(registry, tmp_path: Path, label: str) -> Skopeo:
    home = tmp_path / f"skopeo-{label}"
    home.mkdir()
    return Skopeo(find_skopeo(), home, registry)


def expected_push(image_path: Path, digest: str) -> set[tuple]:
    """(action, digest, tag) of every event a push of the image must cause:
    one per blob, one for the tagged manifest."""
    blobs = read_blobs(image_path)
    manifest = json.loads(blobs[digest])
    pushed = {("push", d["digest"], None) for d in [manifest["config"], *manifest["layers"]]}
    return pushed | {("push", digest, "v1")}


def key(event: dict) -> tuple:
    return event["action"], event["target"].get("digest"), event["target"].get("tag")


def test_push_and_pull_events_reach_the_endpoint(tmp_path, live):
    receiver = EventReceiver().start()
    try:
        registry = live(write_config(tmp_path / "config.yml", receiver.url))
        skopeo = skopeo_for(registry, tmp_path, "client")
        image = build_image(tmp_path / "src", "v1", layers=3, seed="webhook-e2e")
        skopeo.copy(image.ref, skopeo.docker("ci/app", "v1"), "--preserve-digests")
        pushes = expected_push(image.path, image.digest)
        receiver.wait_for(lambda events: pushes <= {key(e) for e in events})

        skopeo.copy(skopeo.docker("ci/app", "v1"), f"oci:{tmp_path / 'back'}:v1")
        assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
        blobs = read_blobs(image.path)
        manifest = json.loads(blobs[image.digest])
        pulls = {("pull", image.digest, "v1")} | {("pull", d["digest"], None) for d in manifest["layers"]}
        events = receiver.wait_for(lambda events: pulls <= {key(e) for e in events})
    finally:
        receiver.stop()

    # Each push exactly once; ids unique.
    assert sorted(key(e) for e in events if e["action"] == "push") == sorted(pushes)
    assert len({e["id"] for e in events}) == len(events)
    by_key = {key(e): e for e in events}
    layer = manifest["layers"][0]
    blob_push = by_key[("push", layer["digest"], None)]
    assert blob_push["target"] == {
        "mediaType": "application/octet-stream", "digest": layer["digest"], "size": layer["size"],
        "length": layer["size"], "repository": "ci/app",
        "url": f"{registry.url}/v2/ci/app/blobs/{layer['digest']}",
    }
    manifest_push = by_key[("push", image.digest, "v1")]
    assert manifest_push["target"] == {
        "mediaType": image.media_type, "digest": image.digest, "size": len(blobs[image.digest]),
        "length": len(blobs[image.digest]), "repository": "ci/app",
        "url": f"{registry.url}/v2/ci/app/manifests/{image.digest}", "tag": "v1",
    }
    for event in (blob_push, manifest_push):
        assert event["request"]["method"] in ("POST", "PUT", "PATCH")
        assert event["request"]["addr"] == "127.0.0.1"
        assert event["request"]["host"] == f"127.0.0.1:{registry.port}"
        assert event["request"]["useragent"].startswith("skopeo/")
        assert event["request"]["id"]
        assert event["actor"] == {}
        assert event["source"]["addr"].endswith(f":{registry.port}") and event["source"]["instanceID"]
        assert event["timestamp"].endswith("Z")
    manifest_pull = by_key[("pull", image.digest, "v1")]
    assert manifest_pull["request"]["method"] == "GET"
    assert manifest_pull["target"]["mediaType"] == image.media_type

    # The HTTP side: media type, configured header, signature over the exact body.
    for delivery in receiver.deliveries:
        assert delivery.path == "/events"
        assert delivery.headers["Content-Type"] == ENVELOPE_MEDIA_TYPE
        assert delivery.headers["Authorization"] == "Bearer test-token"
        expected = "sha256=" + hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        assert delivery.headers["X-Cargohold-Signature"] == expected


def queued(root: Path) -> list[tuple]:
    """The events waiting in the endpoint's queue, as (action, digest, tag)."""
    return [key(e.to_dict()) for b in DurableQueue(str(root / "~notifications" / "ci")).pending() for e in b.events]


@pytest.mark.parametrize("workers", [1, 2])
def test_events_survive_kill_9_while_the_endpoint_is_down(tmp_path, live, workers):
    port = free_port()
    receiver = EventReceiver(port=port)  # not started: the endpoint is down
    config = write_config(tmp_path / "config.yml", receiver.url)
    env = {"CARGOHOLD_HTTP_WORKERS": str(workers)}
    first = live(config, env)
    skopeo = skopeo_for(first, tmp_path, "client")
    image = build_image(tmp_path / "src", "v1", layers=4, seed=f"kill-9-{workers}")
    skopeo.copy(image.ref, skopeo.docker("ci/app", "v1"), "--preserve-digests")
    expected = expected_push(image.path, image.digest)
    root = Path(first.root)
    assert sorted(queued(root)) == sorted(expected), "every event is queued on disk before the responses"

    first.kill()  # SIGKILL: no shutdown hook, no final fsync
    second = live(config, env)
    receiver.start()
    try:
        events = receiver.wait_for(lambda events: expected <= {key(e) for e in events}, timeout=30)
        # Give a duplicate, if any were coming, the time of a few attempts.
        time.sleep(1.5)
        events = receiver.events
    finally:
        receiver.stop()
        second.stop()
    assert sorted(key(e) for e in events) == sorted(expected), "every event exactly once"
    assert len({e["id"] for e in events}) == len(events)
    assert queued(root) == [], "delivered batches leave the queue"
