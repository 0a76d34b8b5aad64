"""Server time of the catalog's pages on a large registry.

Fills a filesystem store with ``--repos`` repositories (``orgNNN/appNNNNN``,
one tag each) and one repository, ``big/app``, with ``--tags`` tags, by
writing the storage layout directly (keys from :mod:`cargohold.storage.paths`,
no fsync: seconds instead of minutes), then times each page through the
WSGI app in this process (what the server spends; no network)::

    .venv/bin/python plugins/cargohold-ui/bench/bench_ui.py [--repos 10000] [--tags 2000] [--runs 20]

Prints, per page, the wall-clock time of the first request (cold caches)
and the median and worst of ``--runs`` further requests, and the median
CPU time of the process, in milliseconds.  ``--auth`` runs the same
with htpasswd and access rules: a signed-in user with the catalog right,
and an anonymous visitor without it (pull on ``org000/**`` only), whose
list is decided repository by repository.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time

from cargohold.app import create_app
from cargohold.storage import paths
from cargohold.testing.auth import write_htpasswd


def _write(root: str, key: str, data: bytes, mtime: float | None = None) -> None:
    path = root + key
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _blob(root: str, data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    _write(root, paths.blob_data(digest), data)
    return {"digest": digest, "size": len(data)}


def fill(root: str, repos: int, tags: int) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                         "config": {"Entrypoint": ["/app"], "Labels": {"bench": "yes"}},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    c = _blob(root, config)
    layers = [_blob(root, os.urandom(64) * (i + 1)) for i in range(3)]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **c},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **d} for d in layers],
    }).encode()
    m = _blob(root, manifest)["digest"]
    digest_link = m.encode()

    def repository(name: str, tag_names) -> None:
        for d in [c] + layers:
            _write(root, paths.layer_link(name, d["digest"]), d["digest"].encode())
        _write(root, paths.manifest_revision_link(name, m), digest_link)
        now = time.time()
        for i, tag in enumerate(tag_names):
            _write(root, paths.tag_link(name, tag), digest_link, mtime=now - i)

    for i in range(repos):
        repository(f"org{i // 100:03d}/app{i:05d}", ["latest"])
    repository("big/app", [f"t{i:05d}" for i in range(tags)])


def timed(client, path: str, runs: int, headers: dict | None = None) -> tuple[float, float, float, float]:
    """Wall-clock ms of the first request, median and worst of ``runs`` more,
    and the median CPU ms of this process (steady when the machine is busy)."""
    def once() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        resp = client.get(path, headers=headers or {})
        body = resp.get_data()
        elapsed = (time.perf_counter() - start) * 1000
        assert resp.status_code == 200, (path, resp.status_code, body[:300])
        return elapsed, (time.process_time() - cpu) * 1000

    first, first_cpu = once()
    samples = [once() for _ in range(runs)] or [(first, first_cpu)]
    times = [t for t, _ in samples]
    return first, statistics.median(times), max(times), statistics.median(c for _, c in samples)


#: A person types a search a moment after the list page opened (which starts
#: reading the listing searches need).
TYPING_PAUSE = 1.0

PAGES = [
    ("repository list, first page", "/ui/"),
    ("repository list, a middle page", "/ui/?last=org050/app05000"),
    ("repository list, last page", "/ui/?last=org099/app09990"),
    ("search 'app0999', typed 1 s after the list opened", "/ui/?fragment=1&q=app0999"),
    ("search with no match", "/ui/?fragment=1&q=nothing-matches"),
    ("2,000 tags, first page by name", "/ui/r/big/app"),
    ("2,000 tags, a middle page by name", "/ui/r/big/app?last=t01000"),
    ("2,000 tags, newest push first", "/ui/r/big/app?sort=pushed"),
    ("a manifest page", "/ui/r/big/app/-/manifest/t01000"),
    ("API: /v2/_catalog?n=50 (for comparison)", "/v2/_catalog?n=50"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=10_000)
    parser.add_argument("--tags", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--root", help="an existing store to reuse (filled when empty)")
    parser.add_argument("--auth", action="store_true", help="htpasswd and access rules")
    args = parser.parse_args(argv)

    tmp = None
    root = args.root
    if root is None:
        tmp = tempfile.TemporaryDirectory(prefix="cargohold-ui-bench-")
        root = tmp.name
    if not os.path.isdir(root + paths.REPOSITORIES):
        start = time.perf_counter()
        fill(root, args.repos, args.tags)
        print(f"filled {root}: {args.repos} repositories and big/app with {args.tags} tags "
              f"in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    config = {"storage": {"filesystem": {"rootdirectory": root}}, "ui": {"enabled": True},
              "log": {"level": "error"}}
    runs = [("open registry", None)]
    if args.auth:
        work = tempfile.mkdtemp(prefix="cargohold-ui-bench-auth-")
        htpasswd = write_htpasswd(os.path.join(work, "htpasswd"), {"alice": "wonderland"})
        with open(os.path.join(work, "access.yml"), "w") as f:
            f.write('rules:\n  - {repositories: ["**"], users: [alice], actions: [pull]}\n'
                    '  - {repositories: ["org000/**", "big/**"], users: [anonymous], actions: [pull]}\n'
                    '  - {registry: catalog, users: ["*"]}\n')
        config["auth"] = {"htpasswd": {"path": htpasswd, "access": os.path.join(work, "access.yml")}}
        alice = {"Authorization": "Basic " + base64.b64encode(b"alice:wonderland").decode()}
        runs = [("htpasswd, signed in (catalog right)", alice), ("htpasswd, anonymous (no catalog right)", {})]
    print(f"{'page':<50} {'first':>8} {'median':>8} {'worst':>8} {'cpu':>8}  (ms, {args.runs} runs; cpu: median)")
    for title, headers in runs:
        print(f"-- {title}")
        # A fresh app whose first request is a search: it reads the whole listing.
        app = create_app(config=config, environ={})
        client = app.test_client()
        first, _, _, cpu = timed(client, "/ui/?fragment=1&q=app0999", 0, headers)
        print(f"{'search before anything was read (cold)':<50} {first:8.1f} {'':>8} {'':>8} {cpu:8.1f}")
        app = create_app(config=config, environ={})
        client = app.test_client()
        for name, path in PAGES:
            if headers == {} and path.startswith("/v2/_catalog"):
                continue
            if "typed" in name:
                time.sleep(TYPING_PAUSE)
            first, median, worst, cpu = timed(client, path, args.runs, headers)
            print(f"{name:<50} {first:8.1f} {median:8.1f} {worst:8.1f} {cpu:8.1f}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
