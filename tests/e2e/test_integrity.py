"""Integrity against a real server process: crashes mid-upload, concurrent
pushes of one blob, and what survives a restart."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time

import requests

from cargohold.testing.server import LiveRegistry


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push(url: str, repo: str, data: bytes) -> requests.Response:
    return requests.post(f"{url}/v2/{repo}/blobs/uploads/?digest={_digest(data)}", data=data, timeout=30)


def _files_under(root: str) -> list[str]:
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.join(dirpath, f) for f in files]
    return out


def test_sigkill_mid_upload_leaves_no_partial_blob_and_keeps_committed_data(tmp_path):
    root = str(tmp_path / "data")
    committed = os.urandom(256 * 1024)
    partial = os.urandom(4 * 1024 * 1024)
    reg = LiveRegistry(root=root).start()
    try:
        assert _push(reg.url, "crash/app", committed).status_code == 201
        # Start a monolithic push, send half the body, then kill the server.
        with socket.create_connection(("127.0.0.1", reg.port)) as s:
            head = (
                f"POST /v2/crash/app/blobs/uploads/?digest={_digest(partial)} HTTP/1.1\r\n"
                f"Host: 127.0.0.1\r\nContent-Length: {len(partial)}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            s.sendall(head + partial[: len(partial) // 2])
            time.sleep(0.5)
            reg.kill()
    finally:
        reg.stop()
    # No file anywhere in the blob store holds the partial content's digest.
    blob_files = [p for p in _files_under(root) if "/blobs/" in p]
    assert not any(_digest(partial)[7:] in p for p in blob_files)
    with LiveRegistry(root=root) as again:
        r = requests.head(f"{again.url}/v2/crash/app/blobs/{_digest(partial)}", timeout=10)
        assert r.status_code == 404
        r = requests.get(f"{again.url}/v2/crash/app/blobs/{_digest(committed)}", timeout=10)
        assert r.status_code == 200 and r.content == committed
        # The same push succeeds after the restart.
        assert _push(again.url, "crash/app", partial).status_code == 201
        r = requests.get(f"{again.url}/v2/crash/app/blobs/{_digest(partial)}", timeout=10)
        assert r.content == partial


def test_concurrent_pushes_of_one_blob_all_succeed(tmp_path):
    data = os.urandom(2 * 1024 * 1024)
    results: list[int] = []

    with LiveRegistry(root=str(tmp_path / "data"), env={"CARGOHOLD_HTTP_WORKERS": "2"}) as reg:
        def push(i: int) -> None:
            results.append(_push(reg.url, f"race/r{i % 2}", data).status_code)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [201] * 8
        for repo in ("race/r0", "race/r1"):
            r = requests.get(f"{reg.url}/v2/{repo}/blobs/{_digest(data)}", timeout=10)
            assert r.status_code == 200 and r.content == data
