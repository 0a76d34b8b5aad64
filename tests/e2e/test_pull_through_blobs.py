"""Pull-through blobs under load and failure, against a real upstream
``cargohold serve`` and a real mirror: many clients share one upstream
transfer with flat memory, and a short or corrupt transfer is never cached."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time

import pytest
import requests
import yaml

from cargohold.storage import paths
from cargohold.testing.server import LiveRegistry
from tests.e2e.test_pull_through import scrape

MiB = 1 << 20


def blocks(size: int, seed: str):
    """``size`` incompressible bytes from ``seed``, 1 MiB at a time."""
    for i in range(0, size, MiB):
        yield hashlib.shake_256(f"{seed}/{i}".encode()).digest(min(MiB, size - i))


def digest_of_blocks(size: int, seed: str) -> str:
    h = hashlib.sha256()
    for block in blocks(size, seed):
        h.update(block)
    return "sha256:" + h.hexdigest()


@pytest.fixture(scope="module")
def upstream():
    live = LiveRegistry()
    live.metrics_url = live.url
    with live:
        yield live


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, upstream):
    conf = tmp_path_factory.mktemp("mirror")
    (conf / "config.yml").write_text(yaml.safe_dump({
        "version": "0.1",
        "proxy": {"upstreams": [{"url": upstream.url, "prefix": "up/", "timeout": "5s"}]},
    }))
    env = {"CARGOHOLD_LOG_LEVEL": "info", "CARGOHOLD_STORAGE_REDIRECT_DISABLE": "true"}
    with LiveRegistry(config_file=str(conf / "config.yml"), env=env) as live:
        yield live


def upload(registry: LiveRegistry, repository: str, size: int, seed: str) -> str:
    digest = digest_of_blocks(size, seed)
    resp = requests.post(f"{registry.url}/v2/{repository}/blobs/uploads/", params={"digest": digest},
                         data=blocks(size, seed), timeout=(10, 300))
    assert resp.status_code == 201, resp.text
    return digest


def upstream_blob_gets(upstream: LiveRegistry) -> float:
    return sum(v for (name, labels), v in scrape(upstream.url).items()
               if name == "cargohold_http_requests_total" and ("route", "v2.get_blob") in labels
               and ("method", "GET") in labels)


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def pull_together(url: str, clients: int) -> list:
    """``clients`` GETs of ``url`` started at once, each hashing the body as
    it streams; ``(status, bytes, digest)`` or the exception, per client."""
    results: list = [None] * clients
    start = threading.Barrier(clients)

    def client(i: int) -> None:
        start.wait()
        h, n = hashlib.sha256(), 0
        try:
            with requests.get(url, stream=True, timeout=(10, 120)) as resp:
                status = resp.status_code
                for chunk in resp.iter_content(MiB):
                    h.update(chunk)
                    n += len(chunk)
            results[i] = (status, n, "sha256:" + h.hexdigest())
        except Exception as e:  # reported by the caller
            results[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return results


def test_eight_clients_share_one_upstream_transfer_with_flat_memory(upstream, mirror):
    size = 256 * MiB
    digest = upload(upstream, "big/blob", size, "proxy-256")
    before = upstream_blob_gets(upstream)
    started = time.monotonic()
    results = pull_together(f"{mirror.url}/v2/up/big/blob/blobs/{digest}", 8)
    elapsed = time.monotonic() - started
    assert results == [(200, size, digest)] * 8, results
    assert upstream_blob_gets(upstream) - before == 1, "the upstream served the blob more than once"
    peak = peak_rss_mib(mirror.proc.pid)
    print(f"8 clients x 256 MiB through the mirror: {elapsed:.1f}s, mirror peak RSS {peak:.0f} MiB")
    assert peak < 150, f"the mirror's peak RSS was {peak:.0f} MiB"
    # Cached now: served from storage, the upstream not asked.
    resp = requests.get(f"{mirror.url}/v2/up/big/blob/blobs/{digest}", headers={"Range": "bytes=0-99"}, timeout=30)
    assert resp.status_code == 206 and len(resp.content) == 100
    assert upstream_blob_gets(upstream) - before == 1


def _damage(upstream: LiveRegistry, digest: str, how: str) -> bytes:
    path = upstream.root + paths.blob_data(digest)
    with open(path, "rb") as f:
        original = f.read()
    with open(path, "r+b") as f:
        if how == "truncate":
            f.truncate(len(original) // 2)
        else:
            f.seek(len(original) - 10)
            f.write(bytes(b ^ 0xFF for b in original[-10:]))
    return original


@pytest.mark.parametrize("how", ["truncate", "corrupt"])
def test_a_short_or_corrupt_upstream_transfer_is_never_cached(upstream, mirror, how):
    size = 3 * MiB + 17
    repository = f"broken/{how}"
    digest = upload(upstream, repository, size, f"proxy-{how}")
    head = requests.head(f"{upstream.url}/v2/{repository}/blobs/{digest}", timeout=30)
    assert head.status_code == 200  # the upstream now knows the size it will announce
    original = _damage(upstream, digest, how)
    url = f"{mirror.url}/v2/up/{repository}/blobs/{digest}"
    try:
        with requests.get(url, stream=True, timeout=(10, 60)) as resp:
            got = b"".join(resp.iter_content(MiB))
        assert len(got) < size, "the client received a whole body that does not match the digest"
    except requests.RequestException:
        pass  # the stream was cut: what a client must see
    cached = mirror.root + paths.blob_data(digest)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not os.path.exists(cached):
        time.sleep(0.2)
    assert not os.path.exists(cached), "a broken transfer became a cached blob"
    assert f"not caching {digest}" in mirror.log()
    # Repaired upstream: the next pull fetches and caches the right bytes.
    with open(upstream.root + paths.blob_data(digest), "wb") as f:
        f.write(original)
    resp = requests.get(url, timeout=60)
    assert resp.status_code == 200
    assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == digest
    assert os.path.exists(cached)


def test_workers_of_one_server_share_one_upstream_transfer(tmp_path, upstream):
    """With ``http.workers: 2`` the clients land on both workers; one of them
    fetches, the other follows its spool file."""
    (tmp_path / "config.yml").write_text(yaml.safe_dump({
        "version": "0.1", "http": {"workers": 2},
        "proxy": {"upstreams": [{"url": upstream.url, "prefix": "up/", "timeout": "5s"}]},
    }))
    with LiveRegistry(config_file=str(tmp_path / "config.yml"), env={"CARGOHOLD_LOG_LEVEL": "info"}) as mirror:
        for round in range(4):
            size = 48 * MiB + round
            digest = upload(upstream, f"workers/r{round}", size, f"proxy-workers-{round}")
            before = upstream_blob_gets(upstream)
            results = pull_together(f"{mirror.url}/v2/up/workers/r{round}/blobs/{digest}", 8)
            assert results == [(200, size, digest)] * 8, results
            assert upstream_blob_gets(upstream) - before == 1, "the upstream served the blob more than once"
            pids = set(re.findall(rf"\[(\d+)\][^\n]*GET /v2/up/workers/r{round}/blobs/", mirror.log()))
            if len(pids) == 2:
                break
        assert len(pids) == 2, f"the clients never reached both workers: {pids}"
