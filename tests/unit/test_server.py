"""cargohold.server: a real serve() in a subprocess, with a tiny app."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from cargohold.config import read_config, validate

# The subprocess: patch first, then a tiny Flask app served by serve().
APP = r'''
import json, os, sys
from gevent import monkey
monkey.patch_all()
import time
from flask import Flask, Response, request
from cargohold import server
from cargohold.config import ConfigError

from cargohold.filebody import FileBody

config = json.loads(sys.argv[1])
marker = sys.argv[2]

# Counts the server's os.sendfile calls (and makes them) for the tests.
SENDFILE_CALLS = [0]
_sendfile = os.sendfile

def counting_sendfile(*args):
    SENDFILE_CALLS[0] += 1
    return _sendfile(*args)

os.sendfile = counting_sendfile

def make_app():
    if os.environ.get("TEST_FAIL_STARTUP"):
        raise ConfigError("storage.bogus: no such driver")
    app = Flask("tiny")

    @app.get("/v2/")
    def base():
        return {}

    @app.get("/pid")
    def pid():
        return str(os.getpid())

    @app.get("/slow")
    def slow():
        open(marker + ".slow", "w").close()
        time.sleep(float(request.args.get("t", "1")))
        return "done"

    @app.post("/upload")
    def upload():
        total, biggest = 0, 0
        while True:
            chunk = request.stream.read(65536)
            if not chunk:
                break
            total += len(chunk)
            biggest = max(biggest, len(chunk))
        return {"total": total, "biggest": biggest}

    @app.get("/two")
    def two():  # two small writes: the second waits for an ACK under Nagle
        return Response(iter([b"a", b"b"]), mimetype="text/plain")

    @app.post("/refuse")
    def refuse():  # answers without reading the body
        return "too large", 413

    @app.get("/big")
    def big():
        n = int(request.args.get("mib", "8"))
        return Response((b"x" * (1 << 20) for _ in range(n)), mimetype="application/octet-stream")

    @app.get("/file")
    def file():  # a FileBody: sent with sendfile on plain HTTP, copied over TLS
        offset, count = int(request.args.get("offset", "0")), int(request.args["count"])
        body = FileBody(open(marker + ".data", "rb", buffering=0), offset, count)
        return Response(body, headers={"Content-Length": str(count)}, direct_passthrough=True,
                        mimetype="application/octet-stream")

    @app.get("/sendfile-calls")
    def sendfile_calls():
        return str(SENDFILE_CALLS[0])

    @app.route("/echo", methods=["GET", "POST", "PUT", "HEAD"])
    @app.route("/echo/<path:rest>", methods=["POST"])
    def echo(rest=None):
        env = request.environ
        body = request.stream.read()
        return {"method": env["REQUEST_METHOD"], "path": env["PATH_INFO"], "query": env["QUERY_STRING"],
                "protocol": env["SERVER_PROTOCOL"], "length": env.get("CONTENT_LENGTH"),
                "type": env.get("CONTENT_TYPE"), "dup": env.get("HTTP_X_DUP"),
                "cookie": env.get("HTTP_COOKIE"), "body": body.decode("latin-1")}

    def shutdown():
        with open(marker + ".shutdown", "w") as f:
            f.write(str(os.getpid()))

    app.cargohold_shutdown = shutdown
    return app

server.configure_logging(config["log"])
sys.exit(server.serve(make_app, config))
'''

START_LINE = re.compile(r"listening on http://127\.0\.0\.1:(\d+) \((\d+) workers?, storage: inmemory\)")


def make_config(**http) -> dict:
    env = {"CARGOHOLD_HTTP_ADDR": "127.0.0.1:0", "CARGOHOLD_STORAGE": "inmemory",
           "CARGOHOLD_HTTP_DRAINTIMEOUT": "5s"}
    env.update({f"CARGOHOLD_HTTP_{k.upper()}": str(v) for k, v in http.items()})
    return validate(read_config(None, env))


class Server:
    """serve() in its own session; the port is read from the start line."""

    def __init__(self, tmp_path, config: dict, env: dict | None = None):
        self.tmp_path = tmp_path
        self.marker = str(tmp_path / "marker")
        script = tmp_path / "app.py"
        script.write_text(APP)
        self.log_path = tmp_path / "server.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(config), self.marker],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.port = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = START_LINE.search(self.log())
            if m and self.port is None:
                self.port = int(m.group(1))
            if self.port is not None:
                try:
                    if self.get("/v2/")[0] == 200:
                        return self
                except OSError:
                    pass
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready:\n{self.log()}")

    def connect(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path: str) -> tuple[int, bytes]:
        conn = self.connect()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def workers(self) -> set[int]:
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with open(path) as f:
            return {int(p) for p in f.read().split()}

    def wait_exit(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # our own session only
            self.proc.wait()
        self._log.close()


@pytest.fixture
def start(tmp_path):
    servers = []

    def start(config=None, env=None, ready=True):
        server = Server(tmp_path, config or make_config(), env)
        servers.append(server)
        return server.wait_ready() if ready else server

    yield start
    for server in servers:
        server.close()


def test_keep_alive_and_start_line(start):
    server = start()
    conn = server.connect()
    try:
        pids = set()
        for _ in range(20):
            conn.request("GET", "/pid")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Connection") != "close"
            pids.add(resp.read())
            sock = conn.sock
        assert conn.sock is sock and sock is not None  # one connection throughout
        assert len(pids) == 1
    finally:
        conn.close()
    assert "(1 worker, storage: inmemory)" in server.log()


def test_keep_alive_requests_do_not_wait_for_delayed_acks(start):
    # Without TCP_NODELAY every streamed response on a kept-alive connection
    # waits ~40 ms (Nagle + delayed ACK): 50 requests would take 2 s.
    server = start()
    conn = server.connect()
    try:
        began = time.monotonic()
        for _ in range(50):
            conn.request("GET", "/two")
            assert conn.getresponse().read() == b"ab"
        assert time.monotonic() - began < 1.0
    finally:
        conn.close()


def test_accepted_sockets_get_tcp_nodelay():
    from cargohold.server.wsgi import configure_accepted

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        with socket.create_connection(listener.getsockname()):
            accepted, _ = listener.accept()
            with accepted:
                configure_accepted(accepted)
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)


def test_bodies_stream_both_ways(start):
    server = start()
    conn = server.connect()
    try:
        piece = b"y" * 100_000
        conn.request("POST", "/upload", body=iter([piece] * 30), encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {"total": 3_000_000, "biggest": 65536}
        conn.request("GET", "/big?mib=8")
        resp = conn.getresponse()
        assert resp.getheader("Transfer-Encoding") == "chunked"
        assert len(resp.read()) == 8 << 20
    finally:
        conn.close()


def test_sigterm_drains_in_flight_request_then_exits_0(start):
    server = start()
    idle = server.connect()
    idle.request("GET", "/v2/")
    idle.getresponse().read()  # an idle keep-alive connection must not hold up the exit
    result = {}

    def slow():
        conn = server.connect()
        conn.request("GET", "/slow?t=1")
        resp = conn.getresponse()
        result.update(status=resp.status, body=resp.read(), connection=resp.getheader("Connection"))

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 5
    while not os.path.exists(server.marker + ".slow") and time.monotonic() < deadline:
        time.sleep(0.01)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    took = time.monotonic() - began
    thread.join(5)
    assert result == {"status": 200, "body": b"done", "connection": "close"}
    assert 0.5 < took < 3.0, took  # waited for the request, not for the 5 s drain timeout
    assert os.path.exists(server.marker + ".shutdown")  # the app's shutdown callback ran
    with pytest.raises(OSError):
        server.get("/v2/")
    idle.close()


def test_drain_timeout_cuts_long_requests(start):
    server = start(make_config(draintimeout="0.5s"))
    result = {}
    thread = threading.Thread(target=lambda: result.update(response=server.get("/slow?t=30")))
    thread.start()
    while not os.path.exists(server.marker + ".slow"):
        time.sleep(0.01)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    assert time.monotonic() - began < 3.0
    thread.join(5)
    status, body = result["response"]
    assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    assert "killing 1 request(s) still running after the drain timeout" in server.log()


def test_workers_share_the_port_and_are_restarted(start):
    server = start(make_config(workers=2))
    assert "(2 workers, storage: inmemory)" in server.log()
    workers = server.workers()
    assert len(workers) == 2
    # Concurrent fresh connections land on both workers.
    seen = set()
    deadline = time.monotonic() + 5
    while seen != workers and time.monotonic() < deadline:
        threads = [threading.Thread(target=lambda: seen.add(int(server.get("/pid")[1]))) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert seen == workers

    victim = sorted(workers)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = server.workers()
        if len(now) == 2 and victim not in now:
            break
        time.sleep(0.05)
    assert len(now) == 2 and victim not in now, server.log()
    assert f"worker {victim} died (signal 9); restarting it" in server.log()
    for _ in range(10):
        assert server.get("/v2/")[0] == 200

    server.proc.send_signal(signal.SIGTERM)
    assert server.wait_exit(10) == 0
    for pid in now:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_without_a_configuration_to_reload_is_ignored(start, workers):
    server = start(make_config(workers=workers))
    before = server.workers() if workers > 1 else {server.proc.pid}
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while "SIGHUP ignored" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "SIGHUP ignored: nothing to reload the configuration from" in server.log()
    time.sleep(0.3)
    assert server.proc.poll() is None and server.get("/v2/")[0] == 200
    assert (server.workers() if workers > 1 else {server.proc.pid}) == before  # no worker died of it


def test_startup_failure_in_workers_stops_the_server(start):
    server = start(make_config(workers=2), env={"TEST_FAIL_STARTUP": "1"}, ready=False)
    assert server.wait_exit(10) == 2
    log = server.log()
    assert "cargohold: config: storage.bogus: no such driver" in log
    assert "Traceback" not in log


def test_tls(start, tmp_path):
    if not shutil.which("openssl"):
        pytest.fail("openssl not found (it makes the test certificate): install it with `apt-get install -y openssl`")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    config = make_config(timeouts_tlshandshake="1s")
    config["http"]["tls"].update(certificate=str(cert), key=str(key), minimumtls="tls1.3")
    server = Server(tmp_path, config)
    try:
        deadline = time.monotonic() + 15
        while not (m := re.search(r"listening on https://127\.0\.0\.1:(\d+)", server.log())):
            assert time.monotonic() < deadline and server.proc.poll() is None, server.log()
            time.sleep(0.05)
        port = int(m.group(1))
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
        conn.request("GET", "/v2/")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"{}\n"
        assert conn.sock.version() == "TLSv1.3"
        # A file body is copied through Python (TLS encrypts in user space): no sendfile.
        data = os.urandom(3 << 20)
        (tmp_path / "marker.data").write_bytes(data)
        conn.request("GET", f"/file?offset=5&count={len(data) - 9}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == data[5:-4]
        conn.request("GET", "/sendfile-calls")
        assert conn.getresponse().read() == b"0"
        conn.close()
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                old.wrap_socket(raw)
        # A client that never starts its handshake is closed at http.timeouts.tlshandshake.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
            began = time.monotonic()
            assert silent.recv(1) == b""
            assert 0.7 < time.monotonic() - began < 5
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_exit(10) == 0
        assert "Traceback" not in server.log()
    finally:
        server.close()


def test_file_bodies_go_out_through_sendfile_on_plain_http(start, tmp_path):
    server = start()
    data = os.urandom((20 << 20) + 12345)  # above one sendfile step
    (tmp_path / "marker.data").write_bytes(data)
    conn = server.connect()
    try:
        for offset, count in ((0, len(data)), (1, 1), (777, (9 << 20) + 3), (len(data) - 10, 10), (0, 0)):
            conn.request("GET", f"/file?offset={offset}&count={count}")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Length") == str(count)
            assert resp.read() == data[offset:offset + count]
        conn.request("HEAD", f"/file?count={len(data)}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b""
        conn.request("GET", "/sendfile-calls")  # the same connection carried on
        calls = int(conn.getresponse().read())
    finally:
        conn.close()
    assert calls >= 4  # each non-empty body, the largest in steps
    # A file shorter than the Content-Length: the body ends early and the
    # connection closes (the client sees a short read, never other bytes).
    conn = server.connect()
    try:
        conn.request("GET", f"/file?offset={len(data) - 100}&count=1000")
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as short:
            resp.read()
        assert short.value.partial == data[-100:]
    finally:
        conn.close()
    assert "Traceback" not in server.log()


def test_a_client_that_stops_reading_a_file_body_is_cut_off(start, tmp_path):
    server = start(make_config(timeouts_body="1s"))
    (tmp_path / "marker.data").write_bytes(os.urandom(64 << 20))
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(f"GET /file?count={64 << 20} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(3)  # reads nothing for longer than http.timeouts.body
        assert read_until_closed(sock) < 64 << 20  # closed: what it can still read ends early
    assert server.get("/v2/")[0] == 200  # the worker serves on
    assert "Traceback" not in server.log()


def test_address_in_use_is_a_config_error(tmp_path):
    from cargohold.config import ConfigError
    from cargohold.server import bind_listener

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"http.addr: cannot listen on 127.0.0.1:{port}"):
            bind_listener("127.0.0.1", port)


# -- the HTTP/1.x front end, over raw sockets --------------------------------------


class Raw:
    """One raw connection: send bytes, read responses one at a time."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> "Raw":
        self.sock.sendall(data)
        return self

    def response(self, head: bool = False) -> tuple[int, dict[str, str], bytes]:
        status = self.file.readline()
        assert status.startswith(b"HTTP/1.1 "), status
        headers = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, value = line.decode("latin-1").split(":", 1)
            headers[name.strip().lower()] = value.strip()
        body = b""
        if head:
            pass
        elif "content-length" in headers:
            body = self.file.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            while size := int(self.file.readline(), 16):
                body += self.file.read(size)
                assert self.file.readline() == b"\r\n"
            assert self.file.readline() == b"\r\n"
        return int(status.split()[1]), headers, body

    def json(self) -> dict:
        status, _, body = self.response()
        assert status == 200, body
        return json.loads(body)

    def closed(self) -> bool:
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def raw(start):
    server = start()
    conns = []

    def connect():
        conns.append(Raw(server.port))
        return conns[-1]

    connect.server = server
    yield connect
    for conn in conns:
        conn.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /echo\r\n\r\n", 400),  # HTTP/0.9
    (b"GET /echo HTTP/2.0\r\n\r\n", 400),
    (b"G(T /echo HTTP/1.1\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost : x\r\n\r\n", 400),  # whitespace before the colon
    (b"GET /echo HTTP/1.1\r\nX-Dup: a\r\n  folded\r\n\r\n", 400),  # obsolete line folding
    (b"POST /echo HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", 400),
    (b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"HEAD /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"GET /echo?" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /echo HTTP/1.1\r\n" + b"X-Many: 1\r\n" * 101 + b"\r\n", 431),
    (b"GET /echo HTTP/1.1\r\n" + b"".join(b"X-Lot%d: %s\r\n" % (i, b"a" * 60000) for i in range(5)) + b"\r\n",
     431),
], ids=lambda v: v[:30].decode("latin-1") if isinstance(v, bytes) else str(v))
def test_malformed_requests_get_the_spec_error_and_close(raw, request_bytes, status):
    conn = raw().send(request_bytes)
    got, headers, body = conn.response()
    assert got == status
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    assert conn.closed()
    assert raw().send(b"GET /echo HTTP/1.1\r\n\r\n").json()["method"] == "GET"  # still serving
    log = raw.server.log()
    assert "bad request" in log and "Traceback" not in log
    assert f'" {status} ' in log  # the access log line has the status


def test_request_line_and_headers_reach_the_environ(raw):
    conn = raw().send(b"POST /echo/a%20b/%2Fc?x=%20&y HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                      b"X-Dup: a\r\nx-dup:  b \r\nX_Dup: spoofed\r\nCookie: a=1\r\nCookie: b=2\r\n"
                      b"Content-Length: 5\r\n\r\nhello")
    assert conn.json() == {
        "method": "POST", "path": "/echo/a b//c", "query": "x=%20&y", "protocol": "HTTP/1.1", "length": "5",
        "type": "text/plain", "dup": "a,b", "cookie": "a=1; b=2", "body": "hello",
    }


def test_chunked_request_body_then_keep_alive(raw):
    conn = raw().send(b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
                      b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
    got = conn.json()
    assert got["body"] == "hello world" and got["length"] is None
    assert conn.send(b"GET /echo?again HTTP/1.1\r\n\r\n").json()["query"] == "again"


def test_expect_100_continue(raw):
    conn = raw().send(b"PUT /echo HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert conn.file.readline() == b"HTTP/1.1 100 Continue\r\n"
    assert conn.file.readline() == b"\r\n"
    assert conn.send(b"hello").json()["body"] == "hello"
    assert conn.send(b"GET /echo HTTP/1.1\r\n\r\n").json()["body"] == ""


def echo_defaults() -> dict:
    return {"method": "GET", "path": "/echo", "query": "", "protocol": "HTTP/1.1", "length": None,
            "type": None, "dup": None, "cookie": None, "body": ""}


def test_pipelined_requests_are_answered_in_order(raw):
    conn = raw().send(b"GET /echo?1 HTTP/1.1\r\n\r\n"
                      b"POST /echo?2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                      b"HEAD /echo?3 HTTP/1.1\r\n\r\n"
                      b"GET /echo?4 HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert conn.json()["query"] == "1"
    assert conn.json() == {**echo_defaults(), "method": "POST", "query": "2", "length": "3", "body": "abc"}
    status, headers, _ = conn.response(head=True)
    assert status == 200 and int(headers["content-length"]) > 0
    assert conn.json()["query"] == "4"
    assert conn.closed()



def test_http_1_0_closes_unless_keep_alive_is_asked_for(raw):
    conn = raw().send(b"GET /echo HTTP/1.0\r\n\r\n")
    status, headers, body = conn.response()
    assert status == 200 and headers["connection"] == "close"
    assert conn.closed()
    conn = raw().send(b"GET /echo HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    status, headers, body = conn.response()
    assert headers["connection"] == "keep-alive" and json.loads(body)["protocol"] == "HTTP/1.0"
    assert conn.send(b"GET /echo HTTP/1.1\r\nConnection: foo, close\r\n\r\n").json()["protocol"] == "HTTP/1.1"
    assert conn.closed()


def test_responses_stream_and_head_has_no_body(raw):
    conn = raw().send(b"GET /big?mib=3 HTTP/1.1\r\n\r\n")
    status, headers, body = conn.response()
    assert headers["transfer-encoding"] == "chunked" and len(body) == 3 << 20
    # No body and no last-chunk marker for HEAD: the next response follows directly.
    conn.send(b"HEAD /big?mib=3 HTTP/1.1\r\n\r\nGET /echo HTTP/1.1\r\n\r\n")
    status, headers, _ = conn.response(head=True)
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert conn.json()["path"] == "/echo"


def test_idle_silent_and_trickling_clients_are_closed_at_their_timeouts(start):
    server = start(make_config(timeouts_header="1s", timeouts_idle="1s"))
    kept = Raw(server.port).send(b"GET /echo HTTP/1.1\r\n\r\n")
    assert kept.json()["method"] == "GET"
    silent = Raw(server.port)
    trickle = Raw(server.port).send(b"GET /echo HTTP/1.1\r\n")
    began = time.monotonic()
    for _ in range(3):  # a header byte every 0.25 s does not move the deadline
        time.sleep(0.25)
        trickle.send(b"X")
    status, headers, body = trickle.response()
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body)["errors"][0]["code"] == "UNSUPPORTED"
    assert 0.8 < time.monotonic() - began < 3
    assert trickle.closed()
    assert silent.closed() and kept.closed()  # no request: closed without a response
    assert time.monotonic() - began < 4
    assert raw_get(server.port) == 200  # and the server carries on
    for conn in (kept, silent, trickle):
        conn.close()


def read_until_closed(sock: socket.socket) -> int:
    """Read until the server closes the connection; returns the bytes read."""
    sock.settimeout(5)
    got = 0
    try:
        while chunk := sock.recv(1 << 20):
            got += len(chunk)
    except ConnectionResetError:
        pass
    return got


def raw_get(port: int) -> int:
    conn = Raw(port).send(b"GET /v2/ HTTP/1.1\r\n\r\n")
    try:
        return conn.response()[0]
    finally:
        conn.close()


def test_a_client_that_stops_reading_is_cut_off_but_a_slow_one_is_not(start):
    server = start(make_config(timeouts_body="0.5s"))
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    stalled.connect(("127.0.0.1", server.port))
    stalled.sendall(b"GET /big?mib=64 HTTP/1.1\r\n\r\n")
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow.connect(("127.0.0.1", server.port))
    slow.sendall(b"GET /big?mib=4 HTTP/1.1\r\n\r\n")
    # The slow reader (~1.5 MB/s) keeps going, although the server's send
    # buffer frees room in steps that take longer than the timeout: the
    # timeout is for a client that stops, not for one that is slow.
    received, began = 0, time.monotonic()
    slow.settimeout(5)
    while chunk := slow.recv(65536):
        received += len(chunk)
        if chunk.endswith(b"0\r\n\r\n"):
            break
        time.sleep(0.01)
    assert received > 4 << 20 and time.monotonic() - began > 1.0
    # Meanwhile the one that read nothing was closed: what it can still read ends early.
    assert read_until_closed(stalled) < 64 << 20
    stalled.close()
    slow.close()
    assert server.get("/v2/")[0] == 200
    assert "Traceback" not in server.log()


def test_an_answer_given_before_the_body_was_read_reaches_the_client(raw):
    # The app answers 413 without reading 8 MiB of body; the server closes
    # the connection, but only after the client has sent it all and can
    # read the answer (a plain close would reset the connection).
    for _ in range(3):
        conn = raw()
        body = b"x" * (8 << 20)
        conn.send(b"POST /refuse HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status, headers, text = conn.response()
        assert status == 413 and text == b"too large" and headers["connection"] == "close"
        assert conn.closed()
    # A huge header: the 431 arrives too, although the client was still sending.
    conn = raw().send(b"GET /echo HTTP/1.1\r\n" + b"X-Big: " + b"a" * (4 << 20) + b"\r\n\r\n")
    assert conn.response()[0] == 431
