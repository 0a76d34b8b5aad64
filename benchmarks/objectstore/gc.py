"""Garbage collection on S3 (a moto server): ``cargohold gc`` over a bucket
holding ``--blobs`` blobs, most of them garbage, with the requests it sends
to moto counted.

    .venv/bin/python benchmarks/objectstore/gc.py --blobs 100000

The bucket is filled directly (parallel ``PutObject`` calls) in the
reference layout: ``--repos`` repositories with one tagged image of
``--layers`` layers each (kept), and unreferenced blobs up to ``--blobs``
(garbage).  Then ``cargohold gc --json`` runs once, through a counting proxy
(:class:`cargohold.testing.counting.CountingProxy`), with a grace of one
second; the report, the wall time and the requests by method are printed,
and the survivors checked: exactly the kept images' blobs remain.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from cargohold.testing.counting import CountingProxy
from mototools import ACCESS_KEY, REGION, SECRET_KEY, client_and_bucket, start_moto

ROOT = "bench/docker/registry"
V2 = f"{ROOT}/v2"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_key(hexdigest: str) -> str:
    return f"{V2}/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--blobs", type=int, default=100000)
    ap.add_argument("--repos", type=int, default=100)
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)

    moto = start_moto()
    try:
        s3, bucket = client_and_bucket(moto, "gc")
        puts: list[tuple[str, bytes]] = []
        kept: set[str] = set()
        for r in range(args.repos):
            name = f"kept/app{r:04d}"
            layers = [f"layer {r} {i}".encode() for i in range(args.layers)]
            config = json.dumps({"repo": name}).encode()
            manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                              "digest": "sha256:" + sha(config), "size": len(config)},
                                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                               "digest": "sha256:" + sha(x), "size": len(x)} for x in layers]}).encode()
            base = f"{V2}/repositories/{name}"
            for data in (*layers, config):
                puts.append((blob_key(sha(data)), data))
                puts.append((f"{base}/_layers/sha256/{sha(data)}/link", f"sha256:{sha(data)}".encode()))
                kept.add(sha(data))
            m = sha(manifest)
            kept.add(m)
            puts += [(blob_key(m), manifest),
                     (f"{base}/_manifests/revisions/sha256/{m}/link", f"sha256:{m}".encode()),
                     (f"{base}/_manifests/tags/latest/current/link", f"sha256:{m}".encode()),
                     (f"{base}/_manifests/tags/latest/index/sha256/{m}/link", f"sha256:{m}".encode())]
        garbage = max(0, args.blobs - len(kept))
        for i in range(garbage):
            data = f"garbage {i}".encode()
            puts.append((blob_key(sha(data)), data))
            if i % 10 == 0:  # some garbage is still linked from a repository without manifests
                puts.append((f"{V2}/repositories/orphans/_layers/sha256/{sha(data)}/link",
                             f"sha256:{sha(data)}".encode()))
        began = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), puts))
        fill = time.perf_counter() - began
        print(f"filled {len(kept) + garbage} blobs ({garbage} garbage), {len(puts)} objects, in {fill:.0f}s",
              flush=True)
        time.sleep(2)  # older than the grace

        with CountingProxy("127.0.0.1", moto.port, timeout=600) as proxy:
            env = {**os.environ,
                   "CARGOHOLD_STORAGE": "s3", "CARGOHOLD_STORAGE_S3_BUCKET": bucket,
                   "CARGOHOLD_STORAGE_S3_REGIONENDPOINT": proxy.url, "CARGOHOLD_STORAGE_S3_REGION": REGION,
                   "CARGOHOLD_STORAGE_S3_ACCESSKEY": ACCESS_KEY, "CARGOHOLD_STORAGE_S3_SECRETKEY": SECRET_KEY,
                   "CARGOHOLD_STORAGE_S3_FORCEPATHSTYLE": "true", "CARGOHOLD_STORAGE_S3_READTIMEOUT": "600s",
                   "CARGOHOLD_STORAGE_S3_ROOTDIRECTORY": f"/{ROOT}",
                   "CARGOHOLD_STORAGE_MAINTENANCE_GC_GRACE": "1s"}
            before, start = proxy.snapshot(), time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "cargohold", "gc", "--json"], capture_output=True, text=True,
                                 env=env)
            seconds = time.perf_counter() - start
            requests_by_method = proxy.since(before)
        if out.returncode:
            print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
            return 1
        report = json.loads(out.stdout)
        left = set()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{V2}/blobs/"):
            left |= {e["Key"].split("/")[-2] for e in page.get("Contents", ())}
        result = {"blobs": len(kept) + garbage, "garbage": garbage, "seconds": round(seconds, 1),
                  "requests": requests_by_method, "requests_total": sum(requests_by_method.values()),
                  "survivors_correct": left == kept, "report": report}
        print(json.dumps({k: v for k, v in result.items() if k != "report"}), flush=True)
        print(json.dumps({k: report[k] for k in ("blobs_scanned", "blobs_swept", "links_swept", "phases",
                                                 "storage_calls")}), flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return 0 if left == kept else 1
    finally:
        moto.stop()
        moto.cleanup()


if __name__ == "__main__":
    sys.exit(main())
