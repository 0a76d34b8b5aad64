"""End-to-end checks every object-store storage plugin runs against its real
backend (an emulator process on loopback), through real ``cargohold serve``
processes and a real skopeo.

Subclass :class:`StorageBackendSuite` and provide a ``backend`` fixture (any
scope) returning a :class:`Backend`::

    from cargohold.testing.backends import StorageBackendSuite

    class TestS3EndToEnd(StorageBackendSuite):
        @pytest.fixture(scope="class")
        def backend(self, moto_server):
            return MotoBackend(moto_server)

The suite checks what an operator relies on: images round-trip
byte-identical, one chunked upload can be spread over several registry
processes sharing the store, blob pulls redirect to (or, with redirects off,
are served with ``Range`` from) the backend, and a backend that goes away in
the middle of a push gives the client a spec error, leaves no partial blob
visible, and the same push succeeds once it is back.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterator, Protocol

import pytest
import requests

from cargohold.storage import paths
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import PathNotFound, StorageDriver
from cargohold.testing.images import build_image, build_index, read_blobs, tagged
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

MiB = 1 << 20
TIMEOUT = (10, 180)  # connect, read: a registry must answer, even with its backend down


class Backend(Protocol):
    """What a plugin's ``backend`` fixture returns."""

    #: ``CARGOHOLD_*`` environment overrides that select and configure the
    #: driver for a ``cargohold serve`` process (e.g. ``CARGOHOLD_STORAGE=s3``
    #: and the ``CARGOHOLD_STORAGE_S3_*`` keys pointing at the emulator).
    env: dict[str, str]

    def stop(self) -> None:
        """Stop the emulator: the backend becomes unreachable."""

    def start(self) -> None:
        """Start it again at the same address, ready for use (buckets or
        containers recreated if the emulator lost them)."""

    def make_driver(self) -> StorageDriver:
        """A fresh driver over the same store, to inspect what is visible."""


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def pattern(size: int, seed: str) -> bytes:
    """``size`` incompressible bytes, reproducible from ``seed``."""
    return hashlib.shake_256(seed.encode()).digest(size)


def error_codes(resp: requests.Response) -> list[str]:
    """The spec error codes of a response; fails the test when the body is not
    the spec's error document."""
    try:
        body = resp.json()
        return [e["code"] for e in body["errors"]]
    except (ValueError, KeyError, TypeError):
        pytest.fail(f"{resp.request.method} {resp.url} -> {resp.status_code}: not a spec error body: "
                    f"{resp.content[:300]!r}", pytrace=False)


class StorageBackendSuite:
    """The shared end-to-end suite; see the module docstring."""

    repository = "e2e/backend"

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def registry(self, backend) -> Iterator[LiveRegistry]:
        with LiveRegistry(env=dict(backend.env)) as live:
            yield live

    @pytest.fixture
    def skopeo(self, registry, tmp_path) -> Skopeo:
        home = tmp_path / "skopeo-home"
        home.mkdir()
        return Skopeo(find_skopeo(), home, registry)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def start_upload(registry: LiveRegistry, repository: str) -> str:
        resp = requests.post(f"{registry.url}/v2/{repository}/blobs/uploads/", timeout=TIMEOUT)
        assert resp.status_code == 202, resp.text
        return resp.headers["Location"]

    @staticmethod
    def absolute(registry: LiveRegistry, location: str) -> str:
        return location if "://" in location else registry.url + location

    # -- tests ------------------------------------------------------------------------

    def test_image_round_trip_is_byte_identical(self, tmp_path, skopeo):
        # A layer larger than any multipart/block size, so pushes stream in parts.
        image = build_image(tmp_path / "src", "v1", layers=3, seed="backend-round-trip", big_layer=12 * MiB)
        remote = skopeo.docker(f"{self.repository}/image", "v1")
        skopeo.copy(image.ref, remote, "--preserve-digests")
        skopeo.copy(remote, f"oci:{tmp_path / 'back'}:v1", "--preserve-digests")
        assert tagged(tmp_path / "back", "v1")["digest"] == image.digest
        expected, got = read_blobs(image.path), read_blobs(tmp_path / "back")
        assert sorted(got) == sorted(expected)
        for digest, data in expected.items():
            assert got[digest] == data, f"{digest} differs after the round trip"

    def test_index_round_trip_is_byte_identical(self, tmp_path, skopeo):
        index = build_index(tmp_path / "src", "multi", seed="backend-index")
        remote = skopeo.docker(f"{self.repository}/index", "multi")
        skopeo.copy(index.ref, remote, "--all", "--preserve-digests")
        skopeo.copy(remote, f"oci:{tmp_path / 'back'}:multi", "--all", "--preserve-digests")
        assert tagged(tmp_path / "back", "multi")["digest"] == index.digest
        assert read_blobs(tmp_path / "back") == read_blobs(index.path)

    def test_chunked_upload_across_processes(self, backend):
        """Consecutive requests of one upload land on different registry
        processes that share only the backend."""
        chunks = [pattern(6 * MiB, "c0"), pattern(1 * MiB, "c1"), pattern(7 * MiB + 5, "c2"),
                  pattern(300 * 1024, "c3")]
        final = pattern(4097, "final")
        data = b"".join(chunks) + final
        digest = digest_of(data)
        repo = f"{self.repository}/cross"
        with LiveRegistry(env=dict(backend.env)) as a, LiveRegistry(env=dict(backend.env)) as b:
            location = self.start_upload(a, repo)
            offset = 0
            for i, chunk in enumerate(chunks):
                node = (b, a)[i % 2]
                resp = requests.patch(self.absolute(node, location), data=chunk, timeout=TIMEOUT, headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                })
                assert resp.status_code == 202, f"chunk {i} on {node.url}: {resp.status_code} {resp.text}"
                offset += len(chunk)
                assert resp.headers["Range"] == f"0-{offset - 1}"
                location = resp.headers["Location"]
            status = requests.get(self.absolute(a, location), timeout=TIMEOUT)
            assert status.status_code == 204
            assert status.headers["Range"] == f"0-{offset - 1}"
            resp = requests.put(self.absolute(b, location), params={"digest": digest}, data=final,
                                headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
            assert resp.status_code == 201, resp.text
            assert resp.headers["Docker-Content-Digest"] == digest
            got = requests.get(f"{a.url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
            assert got.status_code == 200
            assert got.content == data

    def test_blob_pull_redirects_to_the_backend(self, backend, registry):
        data = pattern(3 * MiB + 11, "redirect")
        digest = digest_of(data)
        repo = f"{self.repository}/redirect"
        resp = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                             data=data, timeout=TIMEOUT)
        assert resp.status_code == 201, resp.text
        first = requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}", allow_redirects=False, timeout=TIMEOUT)
        assert first.status_code == 307, "storage.redirect.disable defaults to false: blob GETs redirect"
        target = first.headers["Location"]
        assert not target.startswith(registry.url)
        fetched = requests.get(target, timeout=TIMEOUT)
        assert fetched.status_code == 200
        assert fetched.content == data

    def test_range_pull_without_redirect(self, backend):
        env = dict(backend.env, CARGOHOLD_STORAGE_REDIRECT_DISABLE="true")
        data = pattern(2 * MiB + 3, "range")
        digest = digest_of(data)
        repo = f"{self.repository}/range"
        with LiveRegistry(env=env) as live:
            resp = requests.post(f"{live.url}/v2/{repo}/blobs/uploads/", params={"digest": digest},
                                 data=data, timeout=TIMEOUT)
            assert resp.status_code == 201, resp.text
            whole = requests.get(f"{live.url}/v2/{repo}/blobs/{digest}", allow_redirects=False, timeout=TIMEOUT)
            assert whole.status_code == 200
            assert whole.content == data
            part = requests.get(f"{live.url}/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=1048570-1048599"},
                                allow_redirects=False, timeout=TIMEOUT)
            assert part.status_code == 206
            assert part.content == data[1048570:1048600]
            assert part.headers["Content-Range"] == f"bytes 1048570-1048599/{len(data)}"

    def test_backend_down_mid_push_then_back(self, tmp_path, backend, registry, skopeo):
        image = build_image(tmp_path / "src", "v1", layers=2, seed="backend-outage", big_layer=24 * MiB)
        blobs = read_blobs(image.path)
        big_digest, big = max(blobs.items(), key=lambda kv: len(kv[1]))
        repo = f"{self.repository}/outage"
        location = self.start_upload(registry, repo)

        def body() -> Iterator[bytes]:
            half = len(big) // 2
            for i in range(0, half, MiB):
                yield big[i:min(i + MiB, half)]
            backend.stop()  # the backend vanishes in the middle of the body
            for i in range(half, len(big), MiB):
                yield big[i:i + MiB]

        try:
            # A generator body goes out with chunked transfer encoding (requests
            # would send a Content-Length header next to it, which is invalid).
            resp = requests.put(self.absolute(registry, location), params={"digest": big_digest}, data=body(),
                                headers={"Content-Type": "application/octet-stream"}, timeout=TIMEOUT)
            assert resp.status_code == 503, f"{resp.status_code} {resp.text[:300]}"
            assert error_codes(resp), "an empty error list"
            # While it is down, reads fail with a spec error too, never a 404 or a 500.
            head = requests.get(f"{registry.url}/v2/{repo}/blobs/{big_digest}", timeout=TIMEOUT)
            assert head.status_code == 503
            assert error_codes(head)
        finally:
            backend.start()

        # Nothing of the failed push is visible, through the API or in the store.
        resp = requests.head(f"{registry.url}/v2/{repo}/blobs/{big_digest}", timeout=TIMEOUT)
        assert resp.status_code == 404
        driver = CheckedDriver(backend.make_driver())
        try:
            with pytest.raises(PathNotFound):
                driver.stat(paths.blob_data(big_digest))
        finally:
            driver.close()

        # The same registry process serves again: the same push now succeeds.
        remote = skopeo.docker(repo, "v1")
        skopeo.copy(image.ref, remote, "--preserve-digests")
        skopeo.copy(remote, f"oci:{tmp_path / 'back'}:v1", "--preserve-digests")
        assert read_blobs(tmp_path / "back") == blobs
        manifest = json.loads(blobs[image.digest])
        assert big_digest in [layer["digest"] for layer in manifest["layers"]]
