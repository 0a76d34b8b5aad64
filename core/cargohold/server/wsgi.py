"""The HTTP/1.x front end: pywsgi's server and handler with a hand-written
request parser, one send per small response and graceful draining."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import time

import gevent
import gevent.event
import gevent.os
from gevent import GreenletExit, pywsgi
from gevent.pool import Pool

from cargohold.errors import Unavailable, error_body
from cargohold.request_context import redact_query
from cargohold.server.logs import ACCESS_FIELDS

log = logging.getLogger("cargohold.server")
access_log = logging.getLogger("cargohold.access")




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
        self.environ, self.response_headers, self._request_env = None, None, {}  # ... or its id, agent
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
        env = self.environ or {}
        # The app's view of the client (behind trusted proxies, the forwarded address).
        client = env.get("REMOTE_ADDR") or (
            self.client_address[0] if isinstance(self.client_address, tuple) else self.client_address)
        status = self._orig_status or self.status or "000"  # pywsgi's own errors set only .status
        if isinstance(status, bytes):
            status = status.decode("latin-1")
        status = status.split(" ", 1)[0]
        took = (self.time_finish or time.time()) - self.time_start
        # From the request line: it is this request's even when it was malformed.
        words = (self.requestline or "").split()
        method, target, version = words if len(words) == 3 else ("-", " ".join(words)[:200], "-")
        path, question, query = target.partition("?")
        target = path + question + redact_query(query)  # never a password or token from the URL
        request_id = next((v.decode("latin-1") for k, v in (self.response_headers or ())
                           if k.lower() == b"x-request-id"), None)
        user_agent = self._request_env.get("HTTP_USER_AGENT")
        access_log.info('%s "%s %s %s" %s %s %.1fms %s', client or "-", method, target, version, status,
                        self.response_length or "-", took * 1000, json.dumps(user_agent or "-"),
                        extra={"request_id": request_id, ACCESS_FIELDS: {
                            "remote_addr": client, "method": method, "path": target, "protocol": version,
                            "status": int(status) if status.isdigit() else 0,
                            "bytes_out": self.response_length or 0,
                            "duration_ms": round(took * 1000, 3), "user_agent": user_agent,
                        }})

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
