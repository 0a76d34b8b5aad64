"""Slow, silent and too many clients against a live ``cargohold serve``:
http.timeouts, http.maxconnections and the open-files limit."""

from __future__ import annotations

import http.client
import json
import os
import resource
import selectors
import socket
import statistics
import time

import pytest

from cargohold.testing.server import LiveRegistry

HEADER_TIMEOUT = 4.0
STALLED, IDLE = 5000, 1000
SERVER_FILES = (1024, 16384)  # the server starts with soft 1,024 and a higher hard limit
REQUEST = b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.fixture
def many_files():
    """This process needs a descriptor per client connection too: raise its
    limit (as root, the hard one as well) and put it back afterwards."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max(SERVER_FILES[1], before[0])
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(need, before[1])))
    except (ValueError, OSError) as e:
        pytest.fail(f"cannot raise this process's open-files limit to {need} ({e}): run the tests as root "
                    f"or with `ulimit -Hn {need}`")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)


def read_response(sock: socket.socket) -> tuple[int, dict, bytes]:
    """One whole response with a Content-Length from a blocking socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        assert chunk, "closed inside a response body"
        body += chunk
    return int(lines[0].split()[1]), headers, body


def connect(port: int, payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if payload:
        sock.sendall(payload)
    return sock


def get_v2_ms(port: int) -> float:
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    finally:
        conn.close()
    return (time.perf_counter() - began) * 1000


def open_files_of(pid: int) -> tuple[int, int]:
    """(descriptors open, soft limit) of a process."""
    with open(f"/proc/{pid}/limits") as f:
        soft = next(int(line.split()[3]) for line in f if line.startswith("Max open files"))
    return len(os.listdir(f"/proc/{pid}/fd")), soft


def is_closed(sock: socket.socket) -> bool:
    sock.settimeout(2)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_stalled_and_idle_connections_do_not_starve_one_worker(many_files):
    env = {"CARGOHOLD_HTTP_TIMEOUTS_HEADER": f"{HEADER_TIMEOUT}s", "CARGOHOLD_HTTP_TIMEOUTS_IDLE": "120s",
           "CARGOHOLD_HTTP_WORKERS": "1"}
    with LiveRegistry(env=env, open_files=SERVER_FILES) as registry:
        pid = registry.proc.pid
        assert open_files_of(pid)[1] == SERVER_FILES[1]  # raised to the hard limit at start-up

        idle = [connect(registry.port, REQUEST) for _ in range(IDLE)]
        for sock in idle:
            assert read_response(sock)[0] == 200  # kept alive afterwards

        stalled, sent_at = [], []
        for _ in range(STALLED):
            stalled.append(connect(registry.port, b"GET /v2/ HTT"))  # half a request line, then nothing
            sent_at.append(time.monotonic())
        assert time.monotonic() - sent_at[0] < HEADER_TIMEOUT - 1, "too slow to set up; the test is void"

        # Normal clients still get quick answers with all of those open.
        latencies = [get_v2_ms(registry.port) for _ in range(9)]
        assert statistics.median(latencies) < 100, latencies
        fds, _ = open_files_of(pid)
        assert fds > STALLED + IDLE > 1024, fds  # really holding them, past the old soft limit

        # The stalled ones get a 408 with the spec's error body at their timeout.
        with selectors.DefaultSelector() as selector:
            for i, sock in enumerate(stalled):
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ, i)
            received = [b""] * STALLED
            closed_after = [None] * STALLED
            deadline = sent_at[-1] + HEADER_TIMEOUT + 20
            left = STALLED
            while left and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.5):
                    i = key.data
                    try:
                        chunk = key.fileobj.recv(65536)
                    except ConnectionResetError:
                        chunk = b""
                    if chunk:
                        received[i] += chunk
                        continue
                    closed_after[i] = time.monotonic() - sent_at[i]
                    selector.unregister(key.fileobj)
                    left -= 1
        assert left == 0, f"{left} stalled connections still open {HEADER_TIMEOUT + 20}s after their timeout"
        assert min(closed_after) > HEADER_TIMEOUT - 0.5, min(closed_after)  # not before their timeout
        statuses = {r.split(b" ", 2)[1] for r in received}
        assert statuses == {b"408"}, statuses
        body = json.loads(received[0].partition(b"\r\n\r\n")[2])
        assert body["errors"][0]["code"] == "UNSUPPORTED"

        # The idle keep-alive connections were left alone, and still work.
        for sock in idle[:20]:
            sock.sendall(REQUEST)
            assert read_response(sock)[0] == 200
        assert statistics.median(get_v2_ms(registry.port) for _ in range(5)) < 100
        assert registry.proc.poll() is None
        log = registry.log()
        assert "Too many open files" not in log and "cannot accept" not in log and "Traceback" not in log, log
        for sock in idle + stalled:
            sock.close()


def test_at_the_connection_bound_idle_then_waiting_connections_make_room_then_503(many_files):
    env = {"CARGOHOLD_HTTP_MAXCONNECTIONS": "4", "CARGOHOLD_HTTP_TIMEOUTS_BODY": "2s"}
    with LiveRegistry(env=env) as registry:
        port = registry.port
        # Four idle keep-alive connections; a fifth client closes the oldest.
        idle = [connect(port, REQUEST) for _ in range(4)]
        for sock in idle:
            assert read_response(sock)[0] == 200
            time.sleep(0.01)  # a clear order of age
        fifth = connect(port, REQUEST)
        assert read_response(fifth)[0] == 200
        assert is_closed(idle[0])
        for sock in idle[1:] + [fifth]:
            assert sock.sendall(REQUEST) is None and read_response(sock)[0] == 200
        for sock in idle + [fifth]:
            sock.close()

        # Four uploads that stall inside their body keep all four busy: a
        # new connection is answered 503, and the stalled uploads 408.
        status, headers, _ = read_response(connect(port, b"POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\n"
                                                          b"Host: x\r\nContent-Length: 0\r\n\r\n"))
        assert status == 202
        location = headers["location"].encode()
        busy = [connect(port, b"PATCH " + location + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                                                    b"Content-Type: application/octet-stream\r\n\r\npartial")
                for _ in range(4)]
        stalled_since = time.monotonic()
        time.sleep(0.5)
        refused = connect(port, REQUEST)
        status, headers, body = read_response(refused)
        assert status == 503 and headers["content-type"] == "application/json"
        assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert is_closed(refused)
        for sock in busy:
            status, _, body = read_response(sock)
            assert status == 408 and json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
            assert is_closed(sock)
        assert 1.5 < time.monotonic() - stalled_since < 10  # after http.timeouts.body (2s)
        assert get_v2_ms(port) < 1000

        # Connections waiting for their headers make room too, oldest first.
        waiting = [connect(port, b"GET /v2/ HT") for _ in range(4)]
        time.sleep(0.3)
        assert get_v2_ms(port) < 1000
        assert is_closed(waiting[0])
        waiting[1].settimeout(0.3)
        with pytest.raises(TimeoutError):
            waiting[1].recv(1)  # still open, still waiting
        for sock in busy + waiting:
            sock.close()
        assert "Traceback" not in registry.log()


def test_the_bound_fits_the_open_files_limit(many_files):
    # A hard limit of 160 leaves room for 96 connections: more clients than
    # that close the oldest idle ones instead of running out of descriptors.
    env = {"CARGOHOLD_LOG_LEVEL": "info", "CARGOHOLD_LOG_ACCESSLOG_DISABLED": "true"}
    with LiveRegistry(env=env, open_files=(160, 160)) as registry:
        socks = []
        for _ in range(300):
            socks.append(connect(registry.port, REQUEST))
            assert read_response(socks[-1])[0] == 200
        assert open_files_of(registry.proc.pid)[0] < 160
        assert is_closed(socks[0]) and not is_closed_now(socks[-1])
        log = registry.log()
        assert "at most 96 open connections per worker (http.maxconnections is 10000)" in log
        assert "Too many open files" not in log and "Traceback" not in log
        for sock in socks:
            sock.close()


def is_closed_now(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    finally:
        sock.setblocking(True)
