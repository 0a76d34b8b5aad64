"""Memory a client can make the server hold: a stream of distinct, maximal
manifests keeps a live server's resident memory within the manifest cache's
bound (``storage.cache.manifestsize``) plus a small constant."""

from __future__ import annotations

import hashlib
import json
import os

import requests

from cargohold.testing.server import LiveRegistry

MiB = 1 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CACHE_BOUND = 16 * MiB
# Request buffers, the JSON parse of one 4 MiB manifest and allocator slack.
SLACK = 16 * MiB


def memory(pid: int, field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of a process, in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_distinct_4mib_manifests_stay_within_the_cache_bound():
    env = {"CARGOHOLD_STORAGE_CACHE_MANIFESTSIZE": str(CACHE_BOUND), "CARGOHOLD_HTTP_WORKERS": "1"}
    with LiveRegistry(env=env) as live, requests.Session() as http:
        config = b'{"architecture":"amd64","os":"linux"}'
        assert http.post(f"{live.url}/v2/mem/app/blobs/uploads/?digest={digest(config)}", data=config,
                         timeout=30).status_code == 201
        base = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                           "size": len(config)}}
        padding = 4 * MiB - len(json.dumps(base)) - 100

        def push_and_pull(i: int) -> None:
            doc = dict(base, annotations={"pad": os.urandom(padding // 2).hex()})
            raw = json.dumps(doc).encode()
            assert 4 * MiB - 200 < len(raw) <= 4 * MiB
            resp = http.put(f"{live.url}/v2/mem/app/manifests/{digest(raw)}", data=raw, timeout=60,
                            headers={"Content-Type": OCI_MANIFEST})
            assert resp.status_code == 201, resp.text
            resp = http.get(f"{live.url}/v2/mem/app/manifests/{digest(raw)}", timeout=60,
                            headers={"Accept": OCI_MANIFEST})
            assert resp.status_code == 200 and resp.content == raw

        start = memory(live.proc.pid, "VmRSS")
        for i in range(40):  # 160 MiB of distinct manifests, each pulled once
            push_and_pull(i)
        peak = memory(live.proc.pid, "VmHWM")  # including what requests held while running
        grown = peak - start
        print(f"RSS {start / MiB:.1f} MiB before the manifests, peak {peak / MiB:.1f} MiB (+{grown / MiB:.1f} MiB)")
        assert grown < CACHE_BOUND + SLACK, (
            f"resident memory grew by {grown / MiB:.1f} MiB with a {CACHE_BOUND / MiB:.0f} MiB cache bound")
