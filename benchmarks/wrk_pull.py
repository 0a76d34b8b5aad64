"""Pull throughput of one large blob, measured with ``wrk`` (a C client, so
the client is not the ceiling as a Python one is at 1.5-2 GB/s).

Pushes one random blob (64 MiB by default) to each registry, checks that a
GET returns it byte for byte, then runs ``wrk -t2 -c4 -d10s`` on its URL,
alternating between the registries (A B A B ...), and reports MB/s
(10^6 bytes/s) per round, the median and the ratio A/B.

    python benchmarks/wrk_pull.py --url http://127.0.0.1:5000 --compare http://127.0.0.1:5001
    python benchmarks/wrk_pull.py --url http://127.0.0.1:5000 --rounds 3 --json out.json

Needs ``wrk`` (Debian: ``apt-get install wrk``).  Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import urllib.parse

MiB = 1 << 20
_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}


def _conn(url: str) -> tuple[http.client.HTTPConnection, str]:
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=120), u.path.rstrip("/")


def push_blob(url: str, repo: str, data: bytes) -> str:
    """Upload ``data`` monolithically (POST, then PUT with the body); return its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn, base = _conn(url)
    try:
        conn.request("POST", f"{base}/v2/{repo}/blobs/uploads/", body=b"")
        r = conn.getresponse()
        r.read()
        if r.status != 202:
            raise SystemExit(f"{url}: upload start answered {r.status}")
        loc = r.getheader("Location")
        loc = urllib.parse.urlsplit(urllib.parse.urljoin(url + "/", loc))
        target = loc.path + "?" + (loc.query + "&" if loc.query else "") + "digest=" + digest
        conn.request("PUT", target, body=data, headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        r.read()
        if r.status != 201:
            raise SystemExit(f"{url}: upload answered {r.status}")
        conn.request("GET", f"{base}/v2/{repo}/blobs/{digest}")
        r = conn.getresponse()
        got = r.read()
        if r.status != 200 or got != data:
            raise SystemExit(f"{url}: the pulled blob differs from the pushed one ({r.status})")
    finally:
        conn.close()
    return digest


def run_wrk(url: str, threads: int, connections: int, seconds: int) -> float:
    """One wrk run; returns MB/s from its ``Transfer/sec`` line."""
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    m = re.search(r"Transfer/sec:\s+([\d.]+)([KMGT]?B)", out)
    if not m or "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk failed or saw errors on {url}:\n{out}")
    return float(m.group(1)) * _UNITS[m.group(2)] / 1e6


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="registry A")
    p.add_argument("--compare", help="registry B (interleaved with A)")
    p.add_argument("--mib", type=int, default=64, help="blob size (default 64 MiB)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--repo", default="wrkbench/pull")
    p.add_argument("--json", help="write the results here")
    a = p.parse_args(argv)
    if not shutil.which("wrk"):
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    data = os.urandom(a.mib * MiB)
    targets = {"A": a.url.rstrip("/")}
    if a.compare:
        targets["B"] = a.compare.rstrip("/")
    urls = {}
    for label, base in targets.items():
        digest = push_blob(base, a.repo, data)
        urls[label] = f"{base}/v2/{a.repo}/blobs/{digest}"
    runs = {label: [] for label in targets}
    for rnd in range(a.rounds):
        for label in targets:
            mbps = run_wrk(urls[label], a.threads, a.connections, a.seconds)
            runs[label].append(mbps)
            print(f"round {rnd + 1}/{a.rounds} {label}: {mbps:,.0f} MB/s", file=sys.stderr, flush=True)
    result = {"blob_mib": a.mib, "wrk": f"-t{a.threads} -c{a.connections} -d{a.seconds}s", "targets": targets,
              "runs": runs, "median": {k: statistics.median(v) for k, v in runs.items()}}
    if "B" in runs:
        result["ratio"] = result["median"]["A"] / result["median"]["B"]
        result["ratio_per_round"] = [x / y for x, y in zip(runs["A"], runs["B"])]
    for label, values in runs.items():
        print(f"{label} {targets[label]}: median {result['median'][label]:,.0f} MB/s "
              f"({min(values):,.0f}..{max(values):,.0f})")
    if "ratio" in result:
        per = result["ratio_per_round"]
        print(f"A/B {result['ratio']:.2f} (per round {min(per):.2f}..{max(per):.2f})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
