"""Push one large blob to a registry, monolithic and chunked, and report the
server's peak RSS (VmHWM of the process tree) after each push.

    python contrib/bench/push_rss.py --url http://127.0.0.1:5000 --pid PID --mib 1024

The blob is generated on the fly (never held whole in this process either).
VmHWM is the kernel's lifetime peak, so run it against a freshly started server.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import requests

CHUNK = 1 << 20


def tree_hwm_kib(pid: int) -> int:
    """Sum of VmHWM over ``pid`` and its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return total


def blob_chunks(mib: int, seed: bytes):
    block = hashlib.sha512(seed).digest() * (CHUNK // 64)
    for i in range(mib):
        yield i.to_bytes(8, "big") + block[8:]


def digest_of(mib: int, seed: bytes) -> str:
    h = hashlib.sha256()
    for c in blob_chunks(mib, seed):
        h.update(c)
    return "sha256:" + h.hexdigest()


class Body:
    """A streamed body with a known length (so requests sends Content-Length)."""

    def __init__(self, mib: int, seed: bytes):
        self.it, self.len = blob_chunks(mib, seed), mib * CHUNK

    def __len__(self):
        return self.len

    def __iter__(self):
        return self.it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", default="http://127.0.0.1:5000")
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--chunk-mib", type=int, default=64)
    ap.add_argument("--repo", default="rss/test")
    args = ap.parse_args()
    base = f"{args.url}/v2/{args.repo}/blobs"

    seed = os.urandom(16)
    digest = digest_of(args.mib, seed)
    t = time.monotonic()
    r = requests.post(f"{base}/uploads/?digest={digest}", data=Body(args.mib, seed))
    assert r.status_code == 201, (r.status_code, r.text)
    print(f"monolithic {args.mib} MiB: {args.mib * CHUNK / 1e6 / (time.monotonic() - t):.0f} MB/s, "
          f"server peak RSS {tree_hwm_kib(args.pid) / 1024:.1f} MiB")

    seed = os.urandom(16)
    digest = digest_of(args.mib, seed)
    t = time.monotonic()
    r = requests.post(f"{base}/uploads/")
    assert r.status_code == 202, r.text
    loc, offset = r.headers["Location"], 0
    chunks = blob_chunks(args.mib, seed)
    while offset < args.mib * CHUNK:
        part = b"".join(next(chunks) for _ in range(min(args.chunk_mib, args.mib - offset // CHUNK)))
        r = requests.patch(requests.compat.urljoin(args.url, loc), data=part, headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{offset}-{offset + len(part) - 1}"})
        assert r.status_code == 202, r.text
        loc, offset = r.headers["Location"], offset + len(part)
    r = requests.put(requests.compat.urljoin(args.url, loc) + f"?digest={digest}")
    assert r.status_code == 201, r.text
    print(f"chunked {args.mib} MiB ({args.chunk_mib} MiB PATCHes): "
          f"{args.mib * CHUNK / 1e6 / (time.monotonic() - t):.0f} MB/s, "
          f"server peak RSS {tree_hwm_kib(args.pid) / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
