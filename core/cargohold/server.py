"""Serving the WSGI app with gevent's pywsgi: sockets, worker processes,
signals and draining.

Call :func:`serve` only after ``gevent.monkey.patch_all()`` has run, before
anything else was imported (``cargohold serve`` does this first thing).

What the server does, and why:

* ``TCP_NODELAY`` on every accepted socket.  A response can go out in more
  than one write (headers, then the rest of a streamed body); on keep-alive
  connections Nagle's algorithm and delayed ACKs would then hold it ~40 ms.
* A lean HTTP/1.x front end on top of pywsgi's handler: the request line and
  headers are parsed by hand (pywsgi goes through ``http.client`` and the
  ``email`` package, its biggest per-request cost), the WSGI environ is
  built directly from them, and the status line and headers go out in one
  ``send`` together with the first body chunk when that chunk is small.
  Request bodies are still read by pywsgi's ``Input`` (Content-Length,
  chunked, ``Expect: 100-continue``).
* Keep-alive (HTTP/1.1) and ``SO_KEEPALIVE`` on, listen backlog 1024.
* ``http.workers`` > 1: the parent binds the socket once, forks the workers
  (each builds its own app after the fork, so nothing is shared by accident)
  and supervises them: a worker that dies is replaced; SIGTERM/SIGINT is
  passed on as SIGTERM and the parent exits once the workers have.
* SIGTERM drains: stop accepting, close idle keep-alive connections, let
  requests in flight finish within ``http.draintimeout`` (a second signal
  cuts that short), call the app's ``cargohold_shutdown()`` if it has one,
  exit 0.
* Bodies stream both ways: ``wsgi.input`` is read as the app reads it and the
  app's iterable is written chunk by chunk, as given.
* The access log goes through :mod:`logging` (``cargohold.access``, INFO)
  unless ``log.accesslog.disabled``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import gevent
import gevent.event
import gevent.os
from gevent import GreenletExit, monkey, pywsgi
from gevent.pool import Pool

from cargohold import __version__
from cargohold.config import ConfigError, parse_addr, storage_driver
from cargohold.errors import Unavailable, error_body

__all__ = [
    "BACKLOG", "EXIT_CONFIG", "EXIT_STARTUP", "RegistryServer",
    "bind_listener", "configure_logging", "serve", "ssl_context", "worker_count",
]

log = logging.getLogger("cargohold.server")
access_log = logging.getLogger("cargohold.access")

BACKLOG = 1024
EXIT_CONFIG = 2  # a bad configuration: message printed, no traceback
EXIT_STARTUP = 3  # the app failed to start for another reason (traceback logged)

# A replacement worker that dies again this soon is restarted with backoff.
_MIN_LIFETIME = 2.0
_MAX_BACKOFF = 10.0
# How long the parent waits past the drain timeout before SIGKILLing workers.
_KILL_GRACE = 5.0

_TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}


# -- the HTTP server --------------------------------------------------------------


# Request parsing limits.  The per-line and count limits are the ones pywsgi
# had through http.client; the total keeps one connection's headers bounded.
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100
_MAX_HEADER_BYTES = 256 * 1024
# A first body chunk up to this size is copied behind the headers so the
# response leaves in one send; bigger ones (blob data) are sent as they are.
_COALESCE_MAX = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
_UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")  # WSGI: no HTTP_ prefix
_BadRequest = pywsgi._InvalidClientRequest  # a ValueError: logged as the client's fault, answered 400

_date = [0, b""]


def _http_date() -> bytes:
    """The Date header value, formatted at most once a second."""
    now = int(time.time())
    if now != _date[0]:
        _date[:] = [now, pywsgi.format_date_time(now)]
    return _date[1]


class _Handler(pywsgi.WSGIHandler):
    """pywsgi's handler with a faster request parser and response writer,
    tracking whether the connection waits for a request (idle, safe to close
    when draining) or is serving one."""

    idle = True
    _request_env: dict[str, str] = {}
    _chunked = False

    def handle(self):
        self.server.connections.add(self)
        try:
            super().handle()
        finally:
            self.server.connections.discard(self)

    def read_requestline(self):
        self.idle = True
        if self.server.draining:
            return ""  # ends the keep-alive loop
        try:
            return super().read_requestline()
        finally:
            self.idle = False

    def read_request(self, raw_requestline):
        """Parse the request line and headers (replaces pywsgi's parsing via
        ``http.client``).  Raises ``ValueError`` for a malformed request:
        pywsgi answers 400 and closes the connection."""
        self._orig_status = None  # else a 400 here would be logged with the last request's status
        self.requestline = raw_requestline.rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in _VERSIONS or not _TOKEN.fullmatch(words[0]):
            raise _BadRequest(f"invalid request line: {self.requestline[:200]!r}")
        self.command, self.path, self.request_version = words

        env: dict[str, str] = {}
        readline, total = self.rfile.readline, 0
        for _ in range(_MAX_HEADERS + 1):
            raw = readline(_MAX_HEADER_LINE + 1)
            if raw == b"\r\n" or raw == b"\n":
                break
            total += len(raw)
            if len(raw) > _MAX_HEADER_LINE or total > _MAX_HEADER_BYTES:
                raise _BadRequest("request headers too large")
            if not raw.endswith(b"\n"):
                raise _BadRequest("connection closed inside the request headers")
            if raw[0] in b" \t":
                # Obsolete line folding (RFC 9112 5.2): rejected rather than
                # guessed at, as it is a request smuggling vector.
                raise _BadRequest("folded header line")
            name, colon, value = raw.decode("latin-1").partition(":")
            value = value.strip(" \t\r\n")
            if not colon or not _TOKEN.fullmatch(name) or "\r" in value:
                raise _BadRequest(f"invalid header line: {raw[:200]!r}")
            if "_" in name:
                continue  # would be indistinguishable from its dashed twin in the environ
            key = name.upper().replace("-", "_")
            if key not in _UNPREFIXED:
                key = "HTTP_" + key
            if key in env:  # repeated headers are joined (PEP 3333)
                env[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                env[key] = value
        else:
            raise _BadRequest("too many request headers")

        content_length = None
        self._chunked = "HTTP_TRANSFER_ENCODING" in env
        if self._chunked:
            if env["HTTP_TRANSFER_ENCODING"].lower() != "chunked":
                raise _BadRequest(f"unsupported Transfer-Encoding: {env['HTTP_TRANSFER_ENCODING'][:100]!r}")
            env.pop("CONTENT_LENGTH", None)  # chunked framing wins (RFC 9112 6.3)
        elif "CONTENT_LENGTH" in env:
            length = env["CONTENT_LENGTH"]
            # Digits only: int() would also take "+5", " 5", "5_0" and "5,5"
            # (a repeated header), each a framing disagreement with a proxy.
            if not (length.isascii() and length.isdigit()):
                raise _BadRequest(f"invalid Content-Length: {length[:100]!r}")
            content_length = int(length)
            if content_length and self.command == "HEAD":
                raise _BadRequest("a HEAD request with a body")
        self.content_length = content_length

        connection = env.get("HTTP_CONNECTION", "").lower()
        tokens = {t.strip() for t in connection.split(",")} if connection else ()
        if self.request_version == "HTTP/1.1":
            self.close_connection = "close" in tokens
        else:
            self.close_connection = "keep-alive" not in tokens
        self._request_env = env
        return True

    def get_environ(self):
        env = self.server.get_environ()
        env.update(self._request_env)
        path, _, query = self.path.partition("?")
        env["REQUEST_METHOD"] = self.command
        env["SCRIPT_NAME"] = ""
        env["PATH_INFO"] = pywsgi.unquote_latin1(path) if "%" in path else path
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = self.request_version
        if isinstance(self.client_address, tuple):
            env["REMOTE_ADDR"] = str(self.client_address[0])
            env["REMOTE_PORT"] = str(self.client_address[1])
        # Input answers "100 Continue" on the first body read, if given the socket.
        expect = env.get("HTTP_EXPECT", "").lower() == "100-continue"
        self.wsgi_input = pywsgi.Input(self.rfile, self.content_length,
                                       socket=self.socket if expect else None, chunked_input=self._chunked)
        env["wsgi.input"] = self.wsgi_input
        env["wsgi.input_terminated"] = True
        return env

    def _handle_client_error(self, ex):
        if isinstance(ex, OSError) and not isinstance(ex, pywsgi._InvalidClientInput):
            return None  # the client hung up mid-request: nobody to answer
        return super()._handle_client_error(ex)

    def start_response(self, status, headers, exc_info=None):
        if self.server.draining:
            headers = [h for h in headers if h[0].lower() != "connection"]
            headers.append(("Connection", "close"))
        return super().start_response(status, headers, exc_info)

    def finalize_headers(self):
        if self.provided_date is None:
            self.response_headers.append((b"Date", _http_date()))
        self.connection_upgraded = self.code == 101
        if self.code in (304, 204) or self.provided_content_length is not None:
            return
        if hasattr(self.result, "__len__"):
            length = sum(len(chunk) for chunk in self.result)
            self.response_headers.append((b"Content-Length", str(length).encode()))
        elif not self.connection_upgraded and self.request_version != "HTTP/1.0":
            self.response_headers.append((b"Transfer-Encoding", b"chunked"))
            # A HEAD response has no body, not even the last-chunk marker.
            self.response_use_chunked = self.command != "HEAD"

    def _write_with_headers(self, data):
        self.headers_sent = True
        self.finalize_headers()
        out = bytearray(b"HTTP/1.1 ")
        out += self.status
        out += b"\r\n"
        for name, value in self.response_headers:
            out += name
            out += b": "
            out += value
            out += b"\r\n"
        out += b"\r\n"
        if data and self.command != "HEAD" and len(data) <= _COALESCE_MAX:
            if self.response_use_chunked:
                out += b"%x\r\n" % len(data)
                out += data
                out += b"\r\n"
            else:
                out += data
            data = b""
        self._sendall(out)
        self._write(data)

    def _write(self, data):
        if self.command != "HEAD":  # the app may send a body; HTTP says HEAD has none
            super()._write(data)

    def _sendall(self, data):
        # One plain send() usually takes it all; gevent's sendall() costs a
        # getsockopt and chunking on every call.
        try:
            sent = self.socket.send(data)
            if sent < len(data):
                self.socket.sendall(memoryview(data)[sent:])
        except OSError as ex:
            self.status = f"socket error: {ex}"
            if self.code > 0:
                self.code = -self.code
            raise
        self.response_length += len(data)

    def log_request(self):
        if not self.server.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        client = self.client_address[0] if isinstance(self.client_address, tuple) else self.client_address
        status = self._orig_status or self.status or "000"  # pywsgi's own errors set only .status
        if isinstance(status, bytes):
            status = status.decode("latin-1")
        took = (self.time_finish or time.time()) - self.time_start
        access_log.info('%s "%s" %s %s %.1fms', client or "-", (self.requestline or "").strip(),
                        status.split(" ", 1)[0], self.response_length or "-", took * 1000)

    def log_error(self, msg, *args):
        # pywsgi reports malformed requests here: the client's fault, not ours.
        log.info("bad request " + msg, *args)

    def handle_error(self, t, v, tb):
        if self.server.draining and issubclass(t, GreenletExit):
            # Killed at the end of the drain timeout: a retryable 503 if
            # nothing was sent yet, else just the closed connection.
            self.close_connection = True
            if not self.response_length:
                body = json.dumps(error_body([Unavailable("the registry is shutting down")])).encode()
                try:
                    self.start_response("503 Service Unavailable", [
                        ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
                    self.write(body)
                except OSError:
                    pass
            return
        # Through logging rather than the hub's stderr printer, so that JSON
        # logs stay JSON.
        log.error("error while serving %r", (self.requestline or "").strip(), exc_info=(t, v, tb))
        self._send_error_response_if_possible(500)

    def drain(self) -> None:
        """Close the connection if it is idle, else once its response is out."""
        self.close_connection = True
        if self.idle and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_RDWR)  # wakes the blocked read
            except OSError:
                pass


class RegistryServer(pywsgi.WSGIServer):
    """A :class:`gevent.pywsgi.WSGIServer` with ``TCP_NODELAY`` and
    ``SO_KEEPALIVE`` on each accepted socket, an unbounded greenlet pool, the
    access log through :mod:`logging`, and :meth:`drain` for graceful stops."""

    handler_class = _Handler

    def __init__(self, listener, application, *, access_log: bool = True, **kwargs):
        self.connections: set[_Handler] = set()
        self.draining = False
        self.access_log = access_log
        super().__init__(listener, application, spawn=Pool(), log=None, error_log=log, **kwargs)

    def do_read(self):
        accepted = super().do_read()
        if accepted:
            sock = accepted[0]
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:  # the client already went away
                pass
        return accepted

    def wrap_socket_and_handle(self, client_socket, address):
        try:
            tls_socket = self.wrap_socket(client_socket, **self.ssl_args)
        except (ssl.SSLError, OSError) as e:  # scanners, old clients: not our error
            log.debug("TLS handshake with %s failed: %s", address[0], e)
            return
        with tls_socket:
            return self.handle(tls_socket, address)

    def drain(self, timeout: float, hurry: gevent.event.Event | None = None) -> bool:
        """Stop accepting, close idle connections, and wait up to ``timeout``
        seconds (less if ``hurry`` is set) for requests in flight; then kill
        what is left.  Returns whether everything finished in time."""
        self.draining = True
        self.close()  # this process's copy of the listener only
        for handler in list(self.connections):
            handler.drain()
        deadline = time.monotonic() + timeout
        while len(self.pool) and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            self.pool.join(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
        if len(self.pool):
            log.warning("killing %d request(s) still running after the drain timeout", len(self.pool))
            self.pool.kill(block=True, timeout=1)
            return False
        return True


# -- sockets and TLS --------------------------------------------------------------


def bind_listener(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on ``host:port``.  An empty host listens on all
    interfaces (IPv6 and IPv4 where possible).  Raises :class:`ConfigError`
    naming ``http.addr`` if the address cannot be bound."""
    from gevent import socket as gsocket

    # The original resolver: gevent's would start a thread pool in the
    # parent before it forks.
    getaddrinfo = monkey.get_original("socket", "getaddrinfo")
    if host == "":
        candidates = [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
    else:
        try:
            infos = getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ConfigError(f"http.addr: cannot resolve {host!r}: {e.strerror}") from None
        candidates = [(family, addr) for family, _, _, _, addr in infos]
    error: OSError | None = None
    for family, addr in candidates:
        sock = gsocket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(backlog)
            return sock
        except OSError as e:
            sock.close()
            error = error or e
            if host == "" and family == socket.AF_INET6:
                error = None  # no IPv6 here: fall back to IPv4
    shown = f"[{host}]" if ":" in host else host
    raise ConfigError(f"http.addr: cannot listen on {shown}:{port}: {getattr(error, 'strerror', None) or error}")


def ssl_context(tls: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The server's TLS context from ``http.tls``, or ``None`` without a
    certificate.  Raises :class:`ConfigError` naming the key whose file
    cannot be loaded."""
    if not tls.get("certificate"):
        return None
    from gevent import ssl as gssl  # its sockets cooperate with the hub

    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.get("minimumtls") or "tls1.2"]
    try:
        ctx.load_cert_chain(tls["certificate"], tls["key"])
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"http.tls.certificate: cannot load {tls['certificate']} "
                          f"with key {tls['key']}: {e}") from None
    for ca in tls.get("clientcas") or []:
        try:
            ctx.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"http.tls.clientcas: cannot load {ca}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# -- logging ----------------------------------------------------------------------

_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "warning": logging.WARNING,
           "info": logging.INFO, "debug": logging.DEBUG}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name, "pid": record.process, "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_config: Mapping[str, Any]) -> None:
    """Send all logging to stderr at ``log.level`` in ``log.formatter``
    (``text`` or ``json``), replacing the root logger's handlers."""
    handler = logging.StreamHandler(sys.stderr)
    if log_config.get("formatter") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(str(log_config.get("level", "info")).lower(), logging.INFO))


# -- one worker -----------------------------------------------------------------


@dataclass
class _Spec:
    """Everything a worker needs; built once in the parent."""

    listener: socket.socket
    app_factory: Callable[[], Any]
    config: Mapping[str, Any]
    ssl_context: ssl.SSLContext | None
    expected_errors: tuple[type[BaseException], ...]
    host: str
    multiprocess: bool
    announce: Callable[[], None]  # logs the start line once serving


def _run_worker(spec: _Spec, parent_pid: int | None = None, ready_fd: int | None = None) -> int:
    """Build the app, serve until told to stop, drain; returns the exit code.
    A worker of a supervisor (``parent_pid``) reports readiness on ``ready_fd``."""
    try:
        app = spec.app_factory()
    except spec.expected_errors as e:
        for line in str(e).splitlines() or [type(e).__name__]:
            print(f"cargohold: {line}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    except Exception:
        log.exception("the app failed to start")
        return EXIT_STARTUP

    config = spec.config
    kwargs: dict[str, Any] = {}
    if spec.ssl_context is not None:
        kwargs["ssl_context"] = spec.ssl_context
    server = RegistryServer(
        spec.listener, app,
        access_log=not config.get("log", {}).get("accesslog", {}).get("disabled", False),
        # SERVER_NAME set here spares pywsgi a reverse DNS lookup per worker.
        environ={"wsgi.multiprocess": spec.multiprocess, "SERVER_NAME": spec.host or socket.gethostname()},
        **kwargs,
    )
    stop, hurry = gevent.event.Event(), gevent.event.Event()

    def on_signal():
        (hurry if stop.is_set() else stop).set()

    handlers = [gevent.signal_handler(signal.SIGTERM, on_signal)]
    if parent_pid is None:
        handlers.append(gevent.signal_handler(signal.SIGINT, on_signal))
    else:
        gevent.spawn(_watch_parent, parent_pid, stop)
    server.start()
    if ready_fd is None:
        spec.announce()
    else:
        os.write(ready_fd, b"r")
        os.close(ready_fd)
    stop.wait()
    server.drain(float(config["http"].get("draintimeout", 30.0)), hurry)
    for h in handlers:
        h.cancel()
    shutdown = getattr(app, "cargohold_shutdown", None)
    if callable(shutdown):
        try:
            shutdown()
        except Exception:
            log.exception("shutdown failed")
    return 0


def _watch_parent(parent_pid: int, stop: gevent.event.Event) -> None:
    # A worker whose supervisor died (SIGKILL, OOM) drains instead of
    # serving on as an orphan nobody will stop.
    while not stop.is_set():
        if os.getppid() != parent_pid:
            log.warning("the supervisor process went away; stopping")
            stop.set()
            return
        gevent.sleep(1.0)


# -- the supervisor ---------------------------------------------------------------


class _Supervisor:
    """Forks ``count`` workers sharing the listener and keeps them running.
    Uses the original (unpatched) fork/waitpid/signal/select: gevent's would
    reap children behind our back."""

    def __init__(self, spec: _Spec, count: int):
        self.spec = spec
        self.count = count
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
        self.restarts: dict[int, float] = {}  # slot -> when to restart
        self.backoff: dict[int, float] = {}
        self.pending: list[int] = []
        self.stopping_since: float | None = None
        self.exit_code = 0
        self._signal = monkey.get_original("signal", "signal")
        self._waitpid = monkey.get_original("os", "waitpid")
        self._select = monkey.get_original("select", "select")

    def run(self) -> int:
        rfd, wfd = os.pipe()  # signal wake-ups
        ready_r, ready_w = os.pipe()  # one byte per worker that started serving
        for fd in (rfd, wfd, ready_r):
            os.set_blocking(fd, False)
        self._pipe = (rfd, wfd, ready_r, ready_w)
        announced, ready = False, 0
        old_wakeup = signal.set_wakeup_fd(wfd)
        watched = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)
        old = {sig: self._signal(sig, self._on_signal) for sig in watched}
        try:
            for slot in range(self.count):
                self._spawn(slot)
            while self.children or (self.stopping_since is None and self.restarts):
                self._select([rfd, ready_r], [], [], self._timeout())
                for fd in (rfd, ready_r):
                    try:
                        data = os.read(fd, 512)
                    except BlockingIOError:
                        continue
                    if fd == ready_r:
                        ready += len(data)
                if not announced and ready >= self.count and self.stopping_since is None:
                    announced = True
                    self.spec.announce()
                self._handle_signals()
                self._reap()
                self._tick()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in old.items():
                self._signal(sig, handler)
            for fd in self._pipe:
                os.close(fd)
        log.info("all workers stopped")
        return self.exit_code

    def _on_signal(self, signum, frame):
        self.pending.append(signum)

    def _timeout(self) -> float:
        now = time.monotonic()
        waits = [1.0]
        if self.restarts and self.stopping_since is None:
            waits.append(min(self.restarts.values()) - now)
        return max(0.0, min(waits))

    def _handle_signals(self) -> None:
        pending, self.pending = self.pending, []
        for signum in pending:
            if signum in (signal.SIGTERM, signal.SIGINT):
                if self.stopping_since is None:
                    log.info("stopping: draining %d worker(s)", len(self.children))
                    self.stopping_since = time.monotonic()
                    # The workers close their copies as they start draining;
                    # ours would keep queueing connections nobody accepts.
                    self.spec.listener.close()
                self._kill_all(signal.SIGTERM)  # a second one makes workers hurry

    def _reap(self) -> None:
        while True:
            try:
                pid, status = self._waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            slot, started = self.children.pop(pid, (None, 0.0))
            if slot is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping_since is not None:
                continue
            if code in (EXIT_CONFIG, EXIT_STARTUP):
                log.error("worker %d failed to start (exit %d); stopping", pid, code)
                self.exit_code = code
                self.stopping_since = time.monotonic()
                self._kill_all(signal.SIGTERM)
                continue
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            lived = time.monotonic() - started
            delay = 0.0
            if lived < _MIN_LIFETIME:
                delay = min(_MAX_BACKOFF, max(0.5, self.backoff.get(slot, 0.0) * 2))
            self.backoff[slot] = delay
            log.warning("worker %d died (%s); restarting it%s", pid, how,
                        f" in {delay:.1f}s" if delay else "")
            self.restarts[slot] = time.monotonic() + delay

    def _tick(self) -> None:
        now = time.monotonic()
        if self.stopping_since is not None:
            self.restarts.clear()
            drain = float(self.spec.config["http"].get("draintimeout", 30.0))
            if self.children and now - self.stopping_since > drain + _KILL_GRACE:
                log.warning("workers did not stop in time; killing them")
                self._kill_all(signal.SIGKILL)
            return
        for slot, when in list(self.restarts.items()):
            if when <= now:
                del self.restarts[slot]
                self._spawn(slot)

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _spawn(self, slot: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = gevent.os.fork_gevent()
        if pid:
            self.children[pid] = (slot, time.monotonic())
            return
        code = EXIT_STARTUP
        try:
            signal.set_wakeup_fd(-1)
            ready_w = self._pipe[3]
            for fd in self._pipe[:3]:
                os.close(fd)
            self._signal(signal.SIGCHLD, signal.SIG_DFL)
            self._signal(signal.SIGTERM, signal.SIG_DFL)
            # Ctrl-C reaches the whole process group; the parent forwards it.
            self._signal(signal.SIGINT, signal.SIG_IGN)
            code = _run_worker(self.spec, parent_pid=parent, ready_fd=ready_w)
        except BaseException:
            log.exception("worker crashed")
        finally:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


# -- entry point ------------------------------------------------------------------


def worker_count(value: Any) -> int:
    """``http.workers`` as a number: ``0``/``"auto"`` is one per CPU."""
    if value in (None, 0, "auto"):
        return os.cpu_count() or 1
    return int(value)


def serve(app_factory: Callable[[], Any], config: Mapping[str, Any], *,
          expected_errors: tuple[type[BaseException], ...] = (ConfigError,)) -> int:
    """Serve ``app_factory()`` (a WSGI app, normally the Flask app) as
    ``config["http"]`` says until SIGTERM/SIGINT, then drain; returns the
    process exit code: 0, :data:`EXIT_CONFIG` when the factory raised one of
    ``expected_errors`` (its message is printed as ``cargohold: ...``,
    without a traceback) or :data:`EXIT_STARTUP` for any other start-up
    failure.  The factory runs in each worker, after the fork.  ``config`` is
    a validated configuration (:func:`cargohold.config.validate`); the
    ``http`` and ``log`` sections are used.  Raises :class:`ConfigError` if
    the address cannot be bound or the TLS files cannot be loaded.
    """
    http = config["http"]
    host, port = parse_addr(http["addr"])
    workers = worker_count(http.get("workers", 1))
    context = ssl_context(http.get("tls") or {})
    listener = bind_listener(host, port)
    bound = listener.getsockname()
    shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
    try:
        driver = storage_driver(config)
    except (KeyError, IndexError, TypeError):
        driver = "?"

    def announce() -> None:
        log.info("cargohold %s listening on %s://%s:%d (%d worker%s, storage: %s)", __version__,
                 "https" if context else "http", shown, bound[1], workers, "" if workers == 1 else "s", driver)

    spec = _Spec(listener, app_factory, config, context, tuple(expected_errors), host, workers > 1, announce)
    try:
        if workers == 1:
            return _run_worker(spec)
        return _Supervisor(spec, workers).run()
    finally:
        listener.close()
