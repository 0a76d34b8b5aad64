"""A real HTTP endpoint that receives registry notifications, for tests.

:class:`EventReceiver` is a threaded HTTP server on a loopback port that
records every POST (headers, body, parsed events).  It can be stopped and
started again on the same port, to play an endpoint that is down for a
while, and told to answer with another status.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cargohold.testing.server import free_port


@dataclass
class Delivery:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict]:
        return json.loads(self.body)["events"]


class EventReceiver:
    """An HTTP server on ``127.0.0.1:<port>`` (a free one unless given).
    ``url`` is its address; ``deliveries`` what it received, in order;
    ``status`` what it answers (202 unless changed)."""

    def __init__(self, port: int | None = None, status: int = 202):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/events"
        self.status = status
        self.deliveries: list[Delivery] = []
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "EventReceiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.status
                if 200 <= status < 300:
                    with receiver._cond:
                        receiver.deliveries.append(Delivery(self.path, dict(self.headers.items()), body))
                        receiver._cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = self._thread = None

    @property
    def events(self) -> list[dict]:
        """Every event received, in arrival order."""
        with self._cond:
            return [e for d in self.deliveries for e in d.events]

    def wait_for(self, predicate, timeout: float = 30.0) -> list[dict]:
        """Wait until ``predicate(events)`` holds; returns the events.  Raises
        ``AssertionError`` with what arrived when it does not in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                events = [e for d in self.deliveries for e in d.events]
                if predicate(events):
                    return events
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"events did not arrive within {timeout}s; got {len(events)}: "
                                         + json.dumps([(e["action"], e["target"]) for e in events])[:4000])
                self._cond.wait(left)

    def __enter__(self) -> "EventReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
