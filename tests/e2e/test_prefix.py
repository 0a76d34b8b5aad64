"""A registry served below ``http.prefix``: every URL it hands out (upload
and manifest ``Location`` headers, pagination ``Link`` headers, event target
URLs) keeps the prefix, so a client that only follows them reaches
everything.  Against a live server."""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import urljoin

import pytest
import requests

from cargohold.testing.server import LiveRegistry

PREFIX = "/registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

EVENT_RECORDER = """
import json
from cargohold import hookimpl


@hookimpl
def cargohold_registry_event(event):
    with open({path!r}, "a") as f:
        f.write(json.dumps(event.to_dict()) + "\\n")
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    events = tmp_path_factory.mktemp("events") / "events.jsonl"
    registry = LiveRegistry(env={"CARGOHOLD_HTTP_PREFIX": PREFIX},
                            plugins={"event-recorder": EVENT_RECORDER.format(path=str(events))})
    with registry:
        registry.events = events
        registry.base = registry.url + PREFIX
        yield registry


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def follow(resp: requests.Response, location: str) -> str:
    """Resolve a Location or Link URL against the URL that answered."""
    return urljoin(resp.url, location)


def push_blob(live, repo: str, data: bytes) -> str:
    start = requests.post(f"{live.base}/v2/{repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    upload = follow(start, start.headers["Location"])
    assert upload.startswith(live.base + "/v2/"), upload
    chunk = requests.patch(upload, data=data, timeout=10)
    assert chunk.status_code == 202, chunk.text
    upload = follow(chunk, chunk.headers["Location"])
    put = requests.put(upload, params={"digest": digest(data)}, timeout=10)
    assert put.status_code == 201, put.text
    blob = follow(put, put.headers["Location"])
    assert requests.get(blob, timeout=10).content == data
    return digest(data)


def push_image(live, repo: str, tags: list[str]) -> bytes:
    config = json.dumps({"repo": repo}).encode()
    push_blob(live, repo, config)
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                 "digest": digest(config), "size": len(config)},
                      "layers": []}).encode()
    for tag in tags:
        resp = requests.put(f"{live.base}/v2/{repo}/manifests/{tag}", data=raw, timeout=10,
                            headers={"Content-Type": OCI_MANIFEST})
        assert resp.status_code == 201, resp.text
        assert requests.get(follow(resp, resp.headers["Location"]), timeout=10).content == raw
    return raw


def walk(url: str, key: str) -> list[str]:
    """Every entry of a paginated listing, following ``Link: <...>; rel="next"``."""
    seen, pages = [], 0
    while url:
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 200, (url, resp.status_code, resp.text)
        seen += resp.json()[key]
        pages += 1
        assert pages < 100
        link = resp.headers.get("Link")
        url = follow(resp, link.split(";")[0].strip().strip("<>")) if link else None
    return seen


def test_tags_pagination_links_keep_the_prefix(live):
    tags = [f"t{i:02d}" for i in range(7)]
    push_image(live, "prefixed/app", tags)
    assert walk(f"{live.base}/v2/prefixed/app/tags/list?n=2", "tags") == tags


def test_catalog_pagination_links_keep_the_prefix(live):
    repos = [f"cat/r{i}" for i in range(5)]
    for repo in repos:
        push_image(live, repo, ["v1"])
    listed = walk(f"{live.base}/v2/_catalog?n=2", "repositories")
    assert [r for r in listed if r.startswith("cat/")] == repos


def test_event_target_urls_resolve(live):
    raw = push_image(live, "events/app", ["v1"])
    requests.get(f"{live.base}/v2/events/app/manifests/v1", timeout=10)
    deadline = time.monotonic() + 10
    targets = []
    while time.monotonic() < deadline:
        if live.events.exists():
            events = [json.loads(line) for line in live.events.read_text().splitlines()]
            targets = [e["target"] for e in events if e["target"]["repository"] == "events/app"]
            if any(t.get("tag") == "v1" for t in targets) and len(targets) >= 3:
                break
        time.sleep(0.05)
    urls = [t["url"] for t in targets if "url" in t]
    assert len(urls) >= 3, targets  # config blob push, manifest push, manifest pull
    for url in urls:
        assert url.startswith(live.base + "/v2/events/app/"), url
        resp = requests.get(url, timeout=10, headers={"Accept": OCI_MANIFEST})
        assert resp.status_code == 200, (url, resp.status_code)
    assert raw in [requests.get(u, timeout=10).content for u in urls]
