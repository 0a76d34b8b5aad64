"""A counting HTTP proxy on loopback, to measure how many requests a driver
or a registry sends to its storage backend (an emulator such as moto or
Azurite).

Point the client at :attr:`CountingProxy.url` instead of the backend: every
request is forwarded as it is (same method, path, headers and body, over a
kept-alive connection per client connection) and counted by method::

    with CountingProxy("127.0.0.1", moto_port) as proxy:
        ... S3 settings with regionendpoint=proxy.url ...
        before = proxy.snapshot()
        ...
        print(proxy.since(before))        # {"GET": 1, "HEAD": 0, ...}

Bodies are forwarded whole (read, then sent): meant for listings and small
objects, not for measuring blob throughput.
"""

from __future__ import annotations

import collections
import http.client
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Hop-by-hop headers, never forwarded.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
                        "upgrade"})


class CountingProxy:
    """Forwards HTTP requests from ``127.0.0.1:<port>`` to
    ``upstream_host:upstream_port`` and counts them.  ``count()`` is the
    total so far, ``snapshot()``/``since()`` count a stretch of work, and
    ``requests`` lists ``(method, path)`` in order (``clear()`` empties it).
    Use as a context manager (or :meth:`start` and :meth:`stop`)."""

    def __init__(self, upstream_host: str, upstream_port: int, timeout: float = 120.0):
        self.upstream = (upstream_host, upstream_port)
        self.timeout = timeout
        self.requests: list[tuple[str, str]] = []
        self._counts: collections.Counter = collections.Counter()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    # -- counting ---------------------------------------------------------------------

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._counts[method] += 1
            self.requests.append((method, path))

    def count(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def since(self, snapshot: dict[str, int]) -> dict[str, int]:
        """Requests by method since ``snapshot`` (methods with none left out)."""
        now = self.snapshot()
        return {m: n - snapshot.get(m, 0) for m, n in sorted(now.items()) if n > snapshot.get(m, 0)}

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- serving ----------------------------------------------------------------------

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without this every
            # response would wait for the client's delayed ACK (~40 ms).
            disable_nagle_algorithm = True
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                proxy._record(self.command, self.path)
                for attempt in range(2):
                    if self.upstream is None:
                        self.upstream = http.client.HTTPConnection(*proxy.upstream, timeout=proxy.timeout)
                        self.upstream.connect()
                        self.upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    try:
                        self.upstream.request(self.command, self.path, body=body, headers=headers)
                        resp = self.upstream.getresponse()
                        data = resp.read()
                        break
                    except (http.client.HTTPException, OSError):
                        self.upstream.close()
                        self.upstream = None
                        if attempt:
                            self.send_error(502)
                            return
                self.send_response_only(resp.status, resp.reason)
                for key, value in resp.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                if self.command != "HEAD" or resp.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(data)))
                else:
                    self.send_header("Content-Length", resp.getheader("Content-Length"))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = _forward

            def finish(self):
                super().finish()
                if self.upstream is not None:
                    self.upstream.close()

        return Handler

    def start(self) -> "CountingProxy":
        self._thread = threading.Thread(target=self._server.serve_forever, name="counting-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "CountingProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
