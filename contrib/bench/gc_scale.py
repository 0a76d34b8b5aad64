"""How garbage collection scales with the store: builds synthetic stores of
N blobs in the registry's layout (images of 1 config + 9 layers in 100
repositories, each tagged, plus 1% unreferenced blobs), then times
``cargohold gc`` on each and reports wall time, time per blob, the
collector process's peak RSS and its storage calls.

    python contrib/bench/gc_scale.py filesystem 25000 50000 100000
    python contrib/bench/gc_scale.py s3 25000 50000 100000     # starts a moto server

Writes on the filesystem bypass the driver (no fsync per file), so building
is quick; on S3 they go through the driver, 32 at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from cargohold.storage import paths

REPOS = 100
LAYERS = 9
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def synthetic(blobs: int):
    """Yield (path, bytes) of a store with about ``blobs`` blobs."""
    images = int(blobs * 0.99) // (LAYERS + 2)
    for i in range(images):
        repo = f"bench/r{i % REPOS}"
        config = json.dumps({"i": i}).encode()
        layers = [f"layer {i} {j}".encode() * 8 for j in range(LAYERS)]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config),
                       "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(x),
                        "size": len(x)} for x in layers],
        }).encode()
        for data in [config, *layers]:
            d = digest(data)
            yield paths.blob_data(d), data
            yield paths.layer_link(repo, d), d.encode()
        m = digest(manifest)
        yield paths.blob_data(m), manifest
        yield paths.manifest_revision_link(repo, m), m.encode()
        yield paths.tag_link(repo, f"t{i}"), m.encode()
    for g in range(blobs - images * (LAYERS + 2)):
        data = f"garbage {g}".encode()
        d = digest(data)
        yield paths.blob_data(d), data
        yield paths.layer_link(f"bench/r{g % REPOS}", d), d.encode()


def build_filesystem(root: str, blobs: int) -> None:
    old = time.time() - 7200
    for path, data in synthetic(blobs):
        full = root + path
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
        os.utime(full, (old, old))


def build_driver(driver, blobs: int) -> None:
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda item: driver.put_content(*item), synthetic(blobs), chunksize=256))


# `cargohold gc --json`, then its own peak RSS (KiB) on stderr.
GC_WITH_RSS = ("import resource, sys; from cargohold.cli import main; rc = main(['gc', '--json']); "
               "sys.stderr.write('maxrss=%d' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")


def run_gc(env: dict) -> tuple[float, int, dict]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", GC_WITH_RSS], env={**os.environ, **env},
                          capture_output=True, text=True)
    wall = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return wall, int(proc.stderr.rpartition("maxrss=")[2]), json.loads(proc.stdout)


def main(argv: list[str]) -> int:
    backend, sizes = argv[0], [int(n) for n in argv[1:]]
    base_env = {"CARGOHOLD_STORAGE_MAINTENANCE_GC_GRACE": "1s", "CARGOHOLD_LOG_LEVEL": "warning"}
    moto = None
    if backend == "s3":
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../plugins/cargohold-storage-s3/tests"))
        from conftest import MotoBackend, MotoServer  # the plugin's test helpers

    print(f"{'blobs':>8} {'build s':>8} {'gc s':>7} {'µs/blob':>8} {'peak RSS MiB':>12} {'calls':>8}  phases")
    try:
        for n in sizes:
            t0 = time.monotonic()
            if backend == "filesystem":
                root = tempfile.mkdtemp(prefix="gc-scale-")
                build_filesystem(root, n)
                env = {**base_env, "CARGOHOLD_STORAGE_FILESYSTEM_ROOTDIRECTORY": root}
            else:
                if moto is not None:
                    moto.stop()
                moto = MotoServer().start()  # a fresh server per size: moto keeps every bucket in memory
                target = MotoBackend(moto)
                driver = target.make_driver()
                build_driver(driver, n)
                driver.close()
                # moto answers 500 now and then under concurrent listing and deleting: retry like S3 clients do.
                env = {**base_env, **target.env, "CARGOHOLD_STORAGE_S3_MAXRETRIES": "5"}
            built = time.monotonic() - t0
            time.sleep(1.5)
            wall, rss_kib, report = run_gc(env)
            calls = sum(report["storage_calls"].values())
            print(f"{report['blobs_scanned']:>8} {built:>8.1f} {wall:>7.1f} {wall / n * 1e6:>8.0f} "
                  f"{rss_kib / 1024:>12.0f} {calls:>8}  {report['phases']} swept={report['blobs_swept']} "
                  f"calls={report['storage_calls']}", flush=True)
    finally:
        if moto is not None:
            moto.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
