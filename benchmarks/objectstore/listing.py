"""Catalog and tags listing on S3 (a moto server): cargohold against the
reference registry, on the same bucket, with the requests each sends to
moto counted.

    .venv/bin/python benchmarks/objectstore/listing.py --repos 10000 --tags 10000

What it does:

1. starts ``python -m moto.server`` on loopback, and a counting proxy
   (:class:`cargohold.testing.counting.CountingProxy`) in front of it for
   each registry;
2. fills one bucket in the reference layout with direct, parallel
   ``PutObject`` calls: ``--repos`` repositories (``org<i % 100>/app<i>``,
   one tagged image each) and one repository ``many/tags`` with ``--tags``
   tags;
3. starts the reference registry (``docker-registry``, S3 driver, redirects
   off) and ``cargohold serve`` (S3 driver, redirects off) on that bucket;
4. ``cargohold index rebuild`` builds the listing index (timed, counted);
5. walks ``/v2/_catalog?n=100`` to the end, and lists the tags whole and
   paginated, on each registry, ``--rounds`` times; the reference's catalog
   walk stops after ``--reference-budget`` seconds (it re-walks the bucket
   on every page: its whole walk is estimated from the pages it did).

Prints a table and, with ``--json``, writes every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

import requests

from cargohold.testing.counting import CountingProxy
from cargohold.testing.server import LiveRegistry
from cargohold.testing.services import ReferenceRegistry
from mototools import ACCESS_KEY, REGION, SECRET_KEY, client_and_bucket, start_moto

ROOT = "bench"  # the reference's rootdirectory; cargohold's is ROOT/docker/registry
V2 = f"{ROOT}/docker/registry/v2"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image() -> dict[str, bytes]:
    """One small image: ``{digest hex: bytes}`` of config, layer, manifest."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"listing benchmark layer"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + sha(layer),
                    "size": len(layer)}],
    }).encode()
    return {"config": config, "layer": layer, "manifest": manifest}


def fill(client, bucket: str, repos: int, tags: int, workers: int = 32) -> tuple[list[str], list[str]]:
    """The reference layout, written directly; returns (repositories, tags of many/tags)."""
    img = image()
    digests = {k: sha(v) for k, v in img.items()}
    puts = [(f"{V2}/blobs/sha256/{d[:2]}/{d}/data", img[k]) for k, d in digests.items()]
    m = digests["manifest"]

    def repo_keys(name: str, tag_names: list[str]) -> list[tuple[str, bytes]]:
        base = f"{V2}/repositories/{name}"
        keys = [(f"{base}/_layers/sha256/{digests[k]}/link", f"sha256:{digests[k]}".encode())
                for k in ("config", "layer")]
        keys.append((f"{base}/_manifests/revisions/sha256/{m}/link", f"sha256:{m}".encode()))
        for tag in tag_names:
            keys.append((f"{base}/_manifests/tags/{tag}/current/link", f"sha256:{m}".encode()))
            keys.append((f"{base}/_manifests/tags/{tag}/index/sha256/{m}/link", f"sha256:{m}".encode()))
        return keys

    names = [f"org{i % 100:02d}/app{i:05d}" for i in range(repos)]
    tag_names = [f"v{i:05d}" for i in range(tags)]
    for name in names:
        puts += repo_keys(name, ["latest"])
    puts += repo_keys("many/tags", tag_names)

    def put(item):
        client.put_object(Bucket=bucket, Key=item[0], Body=item[1])

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(put, puts))
    return sorted(names + ["many/tags"]), sorted(tag_names)


def walk(url: str, path: str, key: str, n: int | None) -> tuple[list[str], int]:
    """Follow ``Link`` headers from ``path?n=<n>``; returns (items, pages)."""
    items, pages = [], 0
    with requests.Session() as http:
        next_url = f"{url}{path}" + (f"?n={n}" if n else "")
        while next_url:
            resp = http.get(next_url, timeout=3600)
            resp.raise_for_status()
            items += resp.json()[key] or []
            pages += 1
            link = resp.headers.get("Link")
            next_url = urljoin(url, link.split(";")[0].strip("<> ")) if link else None
    return items, pages


def measure(proxy: CountingProxy, fn):
    before, start = proxy.snapshot(), time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start, sum(proxy.since(before).values())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repos", type=int, default=10000)
    ap.add_argument("--tags", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reference-budget", type=float, default=300.0,
                    help="seconds the reference's n=100 catalog walk may take before it is cut short")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    results: dict = {"repos": args.repos, "tags": args.tags}
    # The reference's AWS SDK refuses to start with a CA bundle over plain HTTP.
    os.environ.pop("AWS_CA_BUNDLE", None)

    moto = start_moto()
    try:
        s3, bucket = client_and_bucket(moto, "bench")
        began = time.perf_counter()
        names, tag_names = fill(s3, bucket, args.repos, args.tags)
        results["fill_seconds"] = round(time.perf_counter() - began, 1)
        print(f"filled {len(names)} repositories and {len(tag_names)} tags in {results['fill_seconds']}s",
              flush=True)

        with CountingProxy("127.0.0.1", moto.port) as ref_proxy, CountingProxy("127.0.0.1", moto.port) as ch_proxy:
            ref_cfg = {"storage": {"s3": {
                "region": REGION, "regionendpoint": ref_proxy.url, "bucket": bucket, "rootdirectory": f"/{ROOT}",
                "accesskey": ACCESS_KEY, "secretkey": SECRET_KEY, "secure": False, "v4auth": True},
                "redirect": {"disable": True}}}
            env = {"CARGOHOLD_STORAGE": "s3", "CARGOHOLD_STORAGE_S3_BUCKET": bucket,
                   "CARGOHOLD_STORAGE_S3_REGIONENDPOINT": ch_proxy.url, "CARGOHOLD_STORAGE_S3_REGION": REGION,
                   "CARGOHOLD_STORAGE_S3_ACCESSKEY": ACCESS_KEY, "CARGOHOLD_STORAGE_S3_SECRETKEY": SECRET_KEY,
                   "CARGOHOLD_STORAGE_S3_FORCEPATHSTYLE": "true",
                   "CARGOHOLD_STORAGE_S3_ROOTDIRECTORY": f"/{ROOT}/docker/registry",
                   "CARGOHOLD_STORAGE_REDIRECT_DISABLE": "true"}
            # The repair command builds the index once (registries keep it up to date on push).
            before, start = ch_proxy.snapshot(), time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "cargohold", "index", "rebuild"], capture_output=True,
                                 text=True, env={**os.environ, **env}, check=True)
            results["index_rebuild"] = {"seconds": round(time.perf_counter() - start, 2),
                                        "requests": sum(ch_proxy.since(before).values()),
                                        "output": out.stdout.strip()}
            print(f"index rebuild: {results['index_rebuild']}", flush=True)

            with ReferenceRegistry(config=ref_cfg) as ref, LiveRegistry(env=env) as ch:
                rows = []

                def bench(label: str, registry_url: str, proxy: CountingProxy, path: str, key: str,
                          n: int | None, expected: list[str], rounds: int = args.rounds) -> dict:
                    runs = []
                    for _ in range(rounds):
                        (items, pages), seconds, reqs = measure(proxy, lambda: walk(registry_url, path, key, n))
                        assert items == expected, f"{label}: wrong listing ({len(items)} items)"
                        runs.append({"seconds": round(seconds, 3), "pages": pages, "requests": reqs,
                                     "requests_per_page": round(reqs / pages, 2)})
                    row = {"label": label, "runs": runs,
                           "median_seconds": statistics.median(r["seconds"] for r in runs)}
                    rows.append(row)
                    print(f"{label:55s} {row['median_seconds']:9.3f}s  pages={runs[0]['pages']:4d}  "
                          f"requests={runs[0]['requests']:6d}  per page={runs[0]['requests_per_page']}", flush=True)
                    return row

                tags_path = "/v2/many/tags/tags/list"
                for who, url, proxy in (("cargohold", ch.url, ch_proxy), ("reference", ref.url, ref_proxy)):
                    bench(f"{who}: tags list, whole ({args.tags} tags)", url, proxy, tags_path, "tags", None,
                          tag_names)
                    bench(f"{who}: tags list, n=1000", url, proxy, tags_path, "tags", 1000, tag_names)
                    bench(f"{who}: tags list, n=100", url, proxy, tags_path, "tags", 100, tag_names,
                          rounds=args.rounds if who == "cargohold" else 1)
                bench(f"cargohold: _catalog n=100 walk ({len(names)} repos)", ch.url, ch_proxy, "/v2/_catalog",
                      "repositories", 100, names)
                bench("cargohold: _catalog n=1000 walk", ch.url, ch_proxy, "/v2/_catalog", "repositories", 1000,
                      names)

                # The reference's n=100 walk, page by page, within a time budget.
                pages, seconds, reqs, seen = 0, 0.0, 0, []
                next_path = "/v2/_catalog?n=100"
                with requests.Session() as http:
                    while next_path and seconds < args.reference_budget:
                        (resp, dt, r) = measure(ref_proxy, lambda: http.get(ref.url + next_path, timeout=3600))
                        resp.raise_for_status()
                        pages, seconds, reqs = pages + 1, seconds + dt, reqs + r
                        seen += resp.json()["repositories"]
                        link = resp.headers.get("Link")
                        next_path = link.split(";")[0].strip("<> ") if link else None
                assert seen == names[:len(seen)], "reference: wrong catalog"
                total_pages = -(-len(names) // 100)
                reference_catalog = {
                    "pages_done": pages, "pages_total": total_pages, "seconds": round(seconds, 2),
                    "requests": reqs, "requests_per_page": round(reqs / pages, 1),
                    "seconds_per_page": round(seconds / pages, 3),
                    "estimated_whole_walk_seconds": round(seconds / pages * total_pages, 1)}
                results["reference_catalog_n100"] = reference_catalog
                print(f"reference: _catalog n=100 walk: {reference_catalog}", flush=True)
                results["rows"] = rows
    finally:
        moto.stop()
        moto.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
