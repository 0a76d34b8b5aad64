"""A real HTTP endpoint standing in for the error service: the DSN points at
it, the SDK's own transport sends to it, and tests read what arrived."""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cargohold.testing.server import free_port


class Collector:
    """Everything POSTed to the fake error service, body decompressed."""

    def __init__(self, port: int):
        self.port = port
        self.dsn = f"http://public@127.0.0.1:{port}/1"
        self.requests: list[dict] = []
        self._cond = threading.Condition()

    def add(self, entry: dict) -> None:
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} request(s) at the error service, got {len(self.requests)}")
                self._cond.wait(left)
            return list(self.requests)

    def events(self) -> list[dict]:
        """The ``event`` items of every envelope received."""
        out = []
        for entry in self.requests:
            lines = entry["body"].split(b"\n")
            i = 1  # line 0: the envelope header
            while i < len(lines) - 1:
                item_header = json.loads(lines[i])
                payload = lines[i + 1]
                if item_header.get("type") == "event":
                    out.append(json.loads(payload))
                i += 2
        return out


@pytest.fixture
def collector():
    port = free_port()
    sink: Collector

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(raw)
            elif encoding == "deflate":
                body = zlib.decompress(raw)
            elif encoding == "":
                body = raw
            else:
                raise AssertionError(f"unexpected Content-Encoding {encoding!r}")
            sink.add({"path": self.path, "headers": dict(self.headers), "raw": raw, "body": body})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    sink = Collector(port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield sink
    server.shutdown()
    server.server_close()
    thread.join(5)
