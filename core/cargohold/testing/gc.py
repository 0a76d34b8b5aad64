"""A soak test of online garbage collection, for any storage backend.

:class:`GCSoak` runs, all at once against live ``cargohold serve`` processes
sharing one store:

* pushers that push images the way clients do (``HEAD`` each blob, upload
  only the missing ones, then ``PUT`` the manifest), images sharing base
  layers, some of them reusing layers of images deleted a while ago (a
  ``HEAD`` that finds an old unreferenced blob and skips its upload: the
  race the collector's handshake closes);
* a deleter removing some of the acknowledged images;
* skopeo copying kept images into other repositories (cross-repository
  mounts);
* ``cargohold gc --grace <grace>`` in a loop.

Then it checks what an operator relies on: no push failed, every
acknowledged manifest that was not deleted pulls byte-identical, no blob of a
deleted image survives a final collection unless a kept image names it, and
the blob store holds exactly the bytes still referenced.

Use it from a test with the ``CARGOHOLD_*`` environment of the backend (:func:`soak`
adds skopeo)::

    soak(env, driver_factory, tmp_path)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import requests

from cargohold.storage import paths
from cargohold.storage.checked import CheckedDriver
from cargohold.storage.driver import PathNotFound, StorageDriver
from cargohold.testing.server import LiveRegistry
from cargohold.testing.skopeo import Skopeo, find_skopeo

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
TIMEOUT = (10, 120)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _bytes(seed: str, size: int) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


@dataclasses.dataclass
class Pushed:
    """An image the registry acknowledged (201 for its manifest)."""

    repository: str
    tag: str
    digest: str
    manifest: bytes
    blobs: dict  # digest -> bytes
    at: float = 0.0  # acknowledged
    deleted_at: float = 0.0


class GCSoak:
    """See the module docstring.  ``env`` selects the backend for both the
    registries and the collector (``CARGOHOLD_*``); ``make_driver()`` gives a
    driver over the same store for the final checks."""

    def __init__(self, env: dict[str, str], make_driver: Callable[[], StorageDriver], workdir,
                 grace: float = 5.0, cycles: int = 20, pushers: int = 3, min_seconds: float = 30.0,
                 max_seconds: float = 240.0, copies: bool = True):
        self.env = dict(env)
        self.env["CARGOHOLD_STORAGE_MAINTENANCE_GC_GRACE"] = f"{grace:g}s"
        self.env["CARGOHOLD_STORAGE_DELETE_ENABLED"] = "true"
        self.make_driver = make_driver
        self.workdir = workdir
        self.grace = grace
        self.cycles = cycles
        self.pushers = pushers
        self.min_seconds = min_seconds
        self.max_seconds = max_seconds
        self.copies = copies  # skopeo copies kept images between repositories meanwhile
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.live: dict[tuple[str, str], Pushed] = {}
        self.protected: list[Pushed] = []
        self.deleted: list[Pushed] = []
        self.failures: list[str] = []
        self.gc_runs: list[dict] = []
        self.reused_old = 0
        self.skipped_uploads = 0
        self.mounted = 0
        self.bases = [[_bytes(f"base-{b}-{i}", 48 * 1024 + 1000 * b + i) for i in range(2)] for b in range(4)]

    # -- clients ------------------------------------------------------------------------

    def _image(self, name: str, extra_layers: list[bytes]) -> tuple[bytes, dict]:
        base = random.choice(self.bases)
        layers = base + extra_layers
        config = json.dumps({"architecture": "amd64", "os": "linux", "name": name,
                             "rootfs": {"type": "layers", "diff_ids": [_digest(x) for x in layers]}}).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(x), "size": len(x)} for x in layers],
        }).encode()
        blobs = {_digest(x): x for x in [config, *layers]}
        return manifest, blobs

    def _push(self, session: requests.Session, url: str, repo: str, tag: str, manifest: bytes,
              blobs: dict, pause: float = 0.0) -> bool:
        """HEAD every blob, upload the missing, then PUT the manifest, as
        clients do.  ``pause`` waits between the HEADs and the manifest."""
        skipped = 0
        for digest, data in blobs.items():
            head = session.head(f"{url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
            if head.status_code == 200:
                skipped += 1
                continue
            if head.status_code != 404:
                self._fail(f"HEAD {repo}@{digest}: {head.status_code} {head.text[:200]}")
                return False
            if random.random() < 0.5:
                resp = session.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=data,
                                    timeout=TIMEOUT)
            else:
                start = session.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=TIMEOUT)
                if start.status_code != 202:
                    self._fail(f"POST upload {repo}: {start.status_code} {start.text[:200]}")
                    return False
                location = start.headers["Location"]
                location = location if "://" in location else url + location
                half = len(data) // 2
                patch = session.patch(location, data=data[:half], timeout=TIMEOUT,
                                      headers={"Content-Type": "application/octet-stream"})
                if patch.status_code != 202:
                    self._fail(f"PATCH {repo}: {patch.status_code} {patch.text[:200]}")
                    return False
                location = patch.headers["Location"]
                location = location if "://" in location else url + location
                resp = session.put(location, params={"digest": digest}, data=data[half:], timeout=TIMEOUT,
                                   headers={"Content-Type": "application/octet-stream"})
            if resp.status_code != 201:
                self._fail(f"upload {repo}@{digest}: {resp.status_code} {resp.text[:200]}")
                return False
        if pause:
            time.sleep(pause)
        resp = session.put(f"{url}/v2/{repo}/manifests/{tag}", data=manifest, timeout=TIMEOUT,
                           headers={"Content-Type": OCI_MANIFEST})
        if resp.status_code != 201:
            self._fail(f"PUT manifest {repo}:{tag}: {resp.status_code} {resp.text[:300]}")
            return False
        self.skipped_uploads += skipped
        return True

    def _fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)

    def _pusher(self, index: int, urls: list[str]) -> None:
        session = requests.Session()
        n = 0
        while not self.stop.is_set():
            n += 1
            url = urls[n % len(urls)]
            repo = f"soak/p{index}/r{n % 3}"
            tag = f"t{n}"
            extra = [_bytes(f"unique-{index}-{n}-{i}", 20 * 1024 + i) for i in range(random.randint(1, 2))]
            reuse = None
            now = time.time()
            with self.lock:
                # Images pushed longer than the grace ago and deleted just now: their
                # layers are old, unreferenced and about to be collected.
                old = [p for p in self.deleted if now - p.at > self.grace * 1.2 and now - p.deleted_at < 3]
                if old and random.random() < 0.6:
                    reuse = random.choice(old)
            pause = random.uniform(0, 0.3)
            if reuse is not None:
                # The pusher HEADs them, skips those still there, and names them in its
                # manifest a moment later, while collections run (the HEAD-then-skip race).
                config = json.loads(reuse.manifest)["config"]["digest"]
                extra = [data for d, data in reuse.blobs.items() if d != config]
                pause = random.uniform(0.5, self.grace / 2 * 0.6)
            manifest, blobs = self._image(f"{repo}:{tag}", extra)
            if self._push(session, url, repo, tag, manifest, blobs, pause=pause):
                pushed = Pushed(repo, tag, _digest(manifest), manifest, blobs, time.time())
                with self.lock:
                    self.live[(repo, tag)] = pushed
                    if reuse is not None:
                        self.reused_old += 1
                    if n % 7 == 0 and len(self.protected) < 4:
                        self.protected.append(pushed)

    def _deleter(self, url: str) -> None:
        session = requests.Session()
        while not self.stop.wait(0.3):
            with self.lock:
                victims = [p for k, p in self.live.items() if p not in self.protected and not k[0].startswith("soak/copy")]
                if len(victims) < 3:
                    continue
                victim = random.choice(victims)
                del self.live[(victim.repository, victim.tag)]
            resp = session.delete(f"{url}/v2/{victim.repository}/manifests/{victim.digest}", timeout=TIMEOUT)
            if resp.status_code != 202:
                self._fail(f"DELETE {victim.repository}@{victim.digest}: {resp.status_code} {resp.text[:200]}")
                continue
            victim.deleted_at = time.time()
            with self.lock:
                self.deleted.append(victim)

    def _copier(self, skopeo) -> None:
        n = 0
        while not self.stop.wait(1.0):
            with self.lock:
                if not self.protected:
                    continue
                source = random.choice(self.protected)
            n += 1
            repo = f"soak/copy{n % 2}"
            proc = skopeo.run("copy", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
                              skopeo.docker(source.repository, source.tag), skopeo.docker(repo, f"c{n}"),
                              check=False)
            if proc.returncode != 0:
                self._fail(f"skopeo copy {source.repository}:{source.tag} -> {repo}: {proc.stderr[-1000:]}")
            else:
                with self.lock:
                    self.live[(repo, f"c{n}")] = dataclasses.replace(source, repository=repo, tag=f"c{n}")
                    self.mounted += 1

    def _gc_once(self) -> None:
        env = dict(os.environ)
        env.update(self.env)
        proc = subprocess.run([sys.executable, "-m", "cargohold", "gc", "--grace", f"{self.grace:g}s", "--json"],
                              env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            self._fail(f"cargohold gc exited with {proc.returncode}: {proc.stderr[-2000:]}")
            return
        self.gc_runs.append(json.loads(proc.stdout))

    def _collector(self, started: float) -> None:
        while not self.stop.is_set():
            self._gc_once()
            elapsed = time.monotonic() - started
            if len(self.gc_runs) >= self.cycles and elapsed >= self.min_seconds or elapsed > self.max_seconds:
                self.stop.set()

    def _guarded(self, target: Callable, *args) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except Exception as e:  # reported by run()
                self._fail(f"{target.__name__}: {type(e).__name__}: {e}")
                self.stop.set()

        return threading.Thread(target=run, daemon=True)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> None:
        env = dict(self.env, CARGOHOLD_HTTP_WORKERS="2")
        with LiveRegistry(env=env) as a, LiveRegistry(env=dict(self.env)) as b:
            urls = [a.url, b.url]
            threads = [self._guarded(self._pusher, i, urls) for i in range(self.pushers)]
            threads.append(self._guarded(self._deleter, a.url))
            if self.copies:
                home = Path(self.workdir) / "skopeo-home"
                home.mkdir(exist_ok=True)
                threads.append(self._guarded(self._copier, Skopeo(find_skopeo(), home, b)))
            started = time.monotonic()
            collector = self._guarded(self._collector, started)
            for t in [*threads, collector]:
                t.start()
            collector.join(self.max_seconds + 300)
            self.stop.set()
            for t in threads:
                t.join(120)
            assert not self.failures, "\n".join(self.failures[:20]) + f"\n--- registry log\n{a.log()}\n{b.log()}"
            assert len(self.gc_runs) >= self.cycles, f"only {len(self.gc_runs)} collections ran"
            swept = sum(r["blobs_swept"] for r in self.gc_runs)
            assert swept > 0, "the collections running during the pushes swept nothing"
            assert self.reused_old > 0, "no push reused layers of an old deleted image"
            # Let everything unreferenced age past the grace window, then collect once more.
            time.sleep(self.grace + 1.5)
            self._gc_once()
            assert not self.failures, "\n".join(self.failures)
            self._check_pulls(a.url)
        self._check_store()

    def _check_pulls(self, url: str) -> None:
        session = requests.Session()
        for (repo, tag), pushed in self.live.items():
            resp = session.get(f"{url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_MANIFEST},
                               timeout=TIMEOUT)
            assert resp.status_code == 200, f"{repo}:{tag}: {resp.status_code} {resp.text[:300]}"
            assert resp.content == pushed.manifest, f"{repo}:{tag} differs"
            for digest, data in pushed.blobs.items():
                got = session.get(f"{url}/v2/{repo}/blobs/{digest}", timeout=TIMEOUT)
                assert got.status_code == 200, f"{repo}@{digest}: {got.status_code} {got.text[:300]}"
                assert got.content == data, f"{repo}@{digest} differs"

    def _check_store(self) -> None:
        referenced: dict[str, int] = {}
        for pushed in self.live.values():
            referenced[pushed.digest] = len(pushed.manifest)
            for digest, data in pushed.blobs.items():
                referenced[digest] = len(data)
        driver = CheckedDriver(self.make_driver())
        try:
            stored: dict[str, int] = {}
            try:
                for info in driver.walk(paths.BLOBS):
                    digest = paths.digest_from_blob_data(info.path)
                    if digest and not info.is_dir:
                        stored[digest] = info.size
            except PathNotFound:
                pass
        finally:
            driver.close()
        leftovers = set(stored) - set(referenced)
        gone = [p for p in self.deleted if (p.repository, p.tag) not in self.live]
        for pushed in gone:
            for digest in [pushed.digest, *pushed.blobs]:
                if digest not in referenced:
                    assert digest not in stored, f"{digest} of deleted {pushed.repository}:{pushed.tag} survived"
        assert not leftovers, f"{len(leftovers)} unreferenced blob(s) left after the final collection"
        assert sum(stored.values()) == sum(referenced.values())
        self.summary = {"images_kept": len(self.live), "images_deleted": len(self.deleted),
                        "collections": len(self.gc_runs), "reused_old_layers": self.reused_old,
                        "copies": self.mounted, "skipped_uploads": self.skipped_uploads, "blobs_swept": sum(r["blobs_swept"] for r in self.gc_runs),
                        "kept_in_use": sum(r["kept_in_use"] for r in self.gc_runs),
                        "gc_seconds_max": max(r["duration"] for r in self.gc_runs),
                        "last_phases": self.gc_runs[-1]["phases"]}


def soak(env: dict[str, str], make_driver: Callable[[], StorageDriver], workdir, **options) -> dict:
    """Run :class:`GCSoak` (with a real skopeo copying images: the test
    fails when skopeo is missing) and return its summary."""
    run = GCSoak(env, make_driver, workdir, **options)
    run.run()
    return run.summary
