"""The HTTP/1.x server: an accept loop and one greenlet per connection,
with a hand-written request parser, one send per small response, timeouts
for slow clients, a bound on open connections, and graceful draining.

Built on gevent's public API only (cooperative sockets, ``spawn``,
``Timeout``, ``Group``); it subclasses nothing of gevent's servers.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import resource
import socket
import ssl
import struct
import sys
import termios
import time
from dataclasses import dataclass, fields
from http import HTTPStatus
from typing import Any, Callable, Mapping
from urllib.parse import unquote_to_bytes
from wsgiref.handlers import format_date_time

import gevent
import gevent.event
from gevent.socket import wait_write
from gevent import GreenletExit
from gevent.pool import Group

from cargohold.client_input import BodyEndedEarly, BodyMalformed
from cargohold.filebody import FileBody, file_body_of
from cargohold.errors import (
    HeadersTooLarge, RegistryError, RequestInvalid, RequestTimeout, Unavailable, Unknown, URITooLong, error_body,
)
from cargohold.request_context import redact_query
from cargohold.server.logs import ACCESS_FIELDS

log = logging.getLogger("cargohold.server")
access_log = logging.getLogger("cargohold.access")

# Request parsing limits: a request line above 8 KiB is 414; a header line
# above 64 KiB, more than 100 headers or 256 KiB of them in all is 431.
_MAX_REQUEST_LINE = 8192
_MAX_HEADER_LINE = 65536
_MAX_HEADERS = 100
_MAX_HEADER_BYTES = 256 * 1024
_MAX_CHUNK_LINE = 4096
# A first body chunk up to this size is copied behind the headers so the
# response leaves in one send; bigger ones (blob data) are sent as they are.
_COALESCE_MAX = 64 * 1024
# After a response, an unread request body up to this size is read and
# dropped to keep the connection; a bigger one closes it.
_DISCARD_MAX = 64 * 1024
# One sendfile call moves at most this much, so that other greenlets get a
# turn while a large, page-cached blob goes out to a fast client.
_SENDFILE_STEP = 8 << 20
# sendfile errors meaning "not from this file": the copy loop sends the rest.
_NO_SENDFILE = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)
# A file body larger than this gets a send buffer of _SNDBUF bytes.
_SENDFILE_BIG = 1 << 20
_SNDBUF = 4 << 20
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
_UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")  # WSGI: no HTTP_ prefix
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LOG_EVERY = 10.0  # seconds between repeated warnings about limits
# Closing with request bytes unread: how long to keep reading and dropping
# them so the client gets the answer before the close (a wait, and in all).
_LINGER_WAIT = 2.0
_LINGER_MAX = 5.0

DEFAULT_MAX_CONNECTIONS = 10000

_date = [0, b""]


def _http_date() -> bytes:
    """The Date header value, formatted at most once a second."""
    now = int(time.time())
    if now != _date[0]:
        _date[:] = [now, format_date_time(now).encode("latin-1")]
    return _date[1]


@dataclass(frozen=True)
class Timeouts:
    """``http.timeouts``, in seconds.

    ``header``: from a new connection (or the first byte of a kept-alive
    connection's next request) to the end of the request headers; a partial
    request is then answered 408.  ``body``: the longest wait for the next
    bytes of a request body, or in which the client takes nothing of a
    response (judged by the socket's send queue); a stalled upload is
    answered 408, a stalled download closed.  ``idle``: how long a kept-alive
    connection may wait for its next request.  ``tlshandshake``: the whole
    TLS handshake of a new connection (``http.tls``)."""

    header: float = 20.0
    body: float = 60.0
    idle: float = 75.0
    tlshandshake: float = 10.0

    @classmethod
    def from_config(cls, http: Mapping[str, Any]) -> "Timeouts":
        given = http.get("timeouts") or {}
        return cls(**{f.name: float(given[f.name]) for f in fields(cls) if given.get(f.name)})


def fd_budget(reserve_fraction: float = 0.25, reserve_min: int = 64) -> int:
    """How many connections fit in this process's open-files limit, leaving
    a quarter of it (at least 64) for files, pipes and the storage."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return sys.maxsize
    return max(1, soft - max(reserve_min, int(soft * reserve_fraction)))


def configure_accepted(sock: socket.socket) -> None:
    """``TCP_NODELAY`` and ``SO_KEEPALIVE`` on an accepted socket.  A
    response can go out in more than one write (headers, then a streamed
    body); on keep-alive connections Nagle's algorithm and delayed ACKs
    would then hold it ~40 ms."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    except OSError:  # the client already went away
        pass


def _unsent(sock) -> int | None:
    """Bytes in the socket's send queue (not yet acknowledged by the
    client), or None where the system cannot tell."""
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except (OSError, ValueError, AttributeError):
        return None


def _read_ahead(fd: int, offset: int, count: int) -> None:
    """``POSIX_FADV_WILLNEED``: start reading the range into the page cache
    (no wait for it), where the system offers it."""
    try:
        os.posix_fadvise(fd, offset, count, os.POSIX_FADV_WILLNEED)
    except (AttributeError, OSError):
        pass


def error_response(error: RegistryError) -> bytes:
    """A complete ``Connection: close`` response carrying the spec's error
    body, for what the server answers on its own."""
    body = json.dumps(error_body([error])).encode()
    phrase = HTTPStatus(error.status).phrase
    return (f"HTTP/1.1 {error.status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nDocker-Distribution-API-Version: registry/2.0\r\n"
            f"Connection: close\r\nDate: {_http_date().decode()}\r\n\r\n").encode("latin-1") + body


class _Shed(GreenletExit):
    """Ends a connection that waits for a request: to make room, or to drain."""


# Connection states; the server keeps the first two in arrival order.
_WAITING, _IDLE, _BUSY = "waiting", "idle", "busy"


class _Input:
    """``wsgi.input``: the request body, by ``Content-Length`` or chunked.
    Reads return what was asked for unless the body ends first.  Sends
    ``100 Continue`` before the first read when the client expects it.  A
    stall longer than ``http.timeouts.body`` raises :class:`RequestTimeout`
    (rendered 408 by the app); a body that ends early or has malformed
    framing raises :class:`~cargohold.client_input.BodyEndedEarly` or
    :class:`~cargohold.client_input.BodyMalformed` (``OSError`` subclasses that
    :mod:`cargohold.client_input` turns into 400s)."""

    __slots__ = ("_conn", "_rfile", "_left", "_chunked", "done")

    def __init__(self, conn: "_Connection", length: int | None, chunked: bool):
        self._conn = conn
        self._rfile = conn.rfile
        self._chunked = chunked
        self._left = 0 if chunked else (length or 0)  # bytes left in the body or the current chunk
        self.done = not chunked and not self._left

    def _fail(self, error: BaseException):
        self.done = True
        self._conn.close_connection = True
        if isinstance(error, TimeoutError):
            raise RequestTimeout("no request body bytes within http.timeouts.body") from None
        raise error

    def _recv(self, n: int) -> bytes:
        try:
            data = self._rfile.read(n)
        except OSError as e:
            self._fail(e)
        if len(data) < n:
            self._fail(BodyEndedEarly("the request body ended early"))
        return data

    def _readline(self, limit: int) -> bytes:
        try:
            line = self._rfile.readline(limit)
        except OSError as e:
            self._fail(e)
        if not line.endswith(b"\n"):
            self._fail(BodyMalformed("malformed chunked request body"))
        return line

    def _next_chunk(self) -> None:
        size_line = self._readline(_MAX_CHUNK_LINE).split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_line):
            self._fail(BodyMalformed("malformed chunk size in the request body"))
        self._left = int(size_line, 16)
        if self._left == 0:  # the last chunk: skip trailers up to the empty line
            for _ in range(_MAX_HEADERS + 1):
                if self._readline(_MAX_HEADER_LINE) in (b"\r\n", b"\n"):
                    self.done = True
                    return
            self._fail(BodyMalformed("too many trailers in the request body"))

    def read(self, size: int | None = -1) -> bytes:
        if self.done:
            return b""
        conn = self._conn
        if conn.expect_continue:
            conn.expect_continue = False
            if not conn.headers_sent:
                conn.send(_CONTINUE)
        if size is None or size < 0:
            size = sys.maxsize
        if not self._chunked:
            data = self._recv(min(size, self._left))
            self._left -= len(data)
            self.done = not self._left
            return data
        parts, want = [], size
        while want and not self.done:
            if not self._left:
                self._next_chunk()
                continue
            data = self._recv(min(want, self._left))
            parts.append(data)
            want -= len(data)
            self._left -= len(data)
            if not self._left and self._readline(3) not in (b"\r\n", b"\n"):
                self._fail(BodyMalformed("malformed chunk end in the request body"))
        return b"".join(parts)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readline(self, size: int | None = -1) -> bytes:
        # Rarely used for bodies; one byte at a time keeps it simple and exact.
        limit = sys.maxsize if size is None or size < 0 else size
        out = bytearray()
        while len(out) < limit and not self.done:
            byte = self.read(1)
            out += byte
            if byte == b"\n":
                break
        return bytes(out)

    def __iter__(self):
        while line := self.readline():
            yield line

    def unread_over(self, limit: int) -> bool:
        """Whether more than ``limit`` bytes of the body are left unread (a
        chunked body or one not yet sent after ``Expect: 100-continue``
        counts as more)."""
        return not self.done and (self._chunked or self._left > limit or self._conn.expect_continue)

    def discard(self, limit: int) -> bool:
        """Read and drop what is left of the body, up to ``limit`` bytes;
        returns whether the body ended (the connection can carry on)."""
        try:
            while not self.done and limit > 0:
                limit -= len(self.read(min(limit, 65536)) or b"")
        except (ValueError, OSError, RegistryError):
            return False
        return self.done


class _Connection:
    """One client connection: reads requests, calls the app, writes
    responses, until the client or a timeout ends it."""

    def __init__(self, server: "RegistryServer", sock, address):
        self.server = server
        self.sock = sock
        self.address = address
        self.rfile = None
        self.greenlet = None
        self.state = _WAITING
        self.accepted = time.monotonic()
        self.requests = 0
        self._reset()

    def _reset(self) -> None:
        self.requestline = ""
        self.command = "-"
        self.env: dict[str, str] = {}
        self.environ: dict | None = None
        self.status = ""
        self.code = 0
        self.response_headers: list | None = None
        self.response_length = 0
        self.headers_sent = False
        self.path = ""
        self.request_version = "HTTP/1.1"
        self.content_length: int | None = None
        self.chunked = False
        self.chunked_response = False
        self.input: _Input | None = None
        self.body_left: int | None = None
        self.close_connection = False
        self.expect_continue = False
        self.request_id: str | None = None
        self.client_gone = False
        self.linger = False  # closing with request bytes unread
        self._queued: int | None = None  # send queue length at the last look
        self.started = 0.0

    # -- the connection's life ---------------------------------------------------

    def run(self) -> None:
        server = self.server
        server._enter(self, _WAITING)
        try:
            if server.ssl_context is not None and not self._handshake():
                return
            self.rfile = self.sock.makefile("rb")
            while self._read_request():
                self._respond()
                self.requests += 1
                if self.close_connection or server.draining:
                    break
                self._reset()
            if self.linger:
                self._linger()
        except _Shed:
            return
        except GreenletExit:
            # Killed at the end of the drain timeout: a retryable 503 if
            # nothing was sent yet, else just the closed connection.
            if self.state == _BUSY and not self.headers_sent:
                self.send(error_response(Unavailable("the registry is shutting down")), quiet=True)
            return
        finally:
            server._leave(self)
            if self.rfile is not None:
                self.rfile.close()
            self.sock.close()

    def _handshake(self) -> bool:
        timeouts = self.server.timeouts
        timer = gevent.Timeout(timeouts.tlshandshake)
        timer.start()
        try:
            # The TLS socket takes over the descriptor: closing it is run()'s job now.
            self.sock = self.server.ssl_context.wrap_socket(self.sock, server_side=True,
                                                            do_handshake_on_connect=False)
            self.sock.do_handshake()
        except (ssl.SSLError, OSError) as e:  # scanners, old clients: not our error
            log.debug("TLS handshake with %s failed: %s", self.address[0], e)
            return False
        except gevent.Timeout as e:
            if e is not timer:
                raise
            log.debug("TLS handshake with %s timed out (http.timeouts.tlshandshake)", self.address[0])
            return False
        finally:
            timer.close()
        return True

    def _linger(self) -> None:
        """After answering a request whose bytes were not all read: stop
        sending, then read and drop what the client still sends, for a
        while, before closing.  Closing with unread data resets the
        connection, and the client could lose the answer (RFC 9112 9.6).
        Meanwhile the connection is the first to go at the connection bound."""
        self.server._enter(self, _IDLE)
        deadline = time.monotonic() + _LINGER_MAX
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(_LINGER_WAIT)
            while time.monotonic() < deadline and self.sock.recv(65536):
                pass
        except OSError:
            pass

    def _read_request(self) -> bool:
        """Wait for the next request and parse its line and headers; False
        when the connection should end."""
        server, timeouts = self.server, self.server.timeouts
        fresh = not self.requests
        if fresh:
            self.sock.settimeout(max(0.001, timeouts.header - (time.monotonic() - self.accepted)))
        else:
            server._enter(self, _IDLE)
            self.sock.settimeout(timeouts.idle)
        try:
            buffered = self.rfile.peek(1)
        except OSError:  # timed out (quietly: no request began) or reset
            return False
        if not buffered:
            return False
        self.started = time.time()
        if not fresh:
            server._enter(self, _WAITING)
        try:
            if b"\n\r\n" in buffered or b"\n\n" in buffered:
                self._parse_head()  # all there: nothing can block
            else:
                self.sock.settimeout(None)  # the deadline below covers the whole head
                deadline = timeouts.header if not fresh else timeouts.header - (time.monotonic() - self.accepted)
                timer = gevent.Timeout(max(0.001, deadline))
                timer.start()
                try:
                    self._parse_head()
                except gevent.Timeout as e:
                    if e is not timer:
                        raise
                    raise RequestTimeout("request headers not received within http.timeouts.header") from None
                except OSError:
                    return False
                finally:
                    timer.close()
        except RegistryError as e:
            server._enter(self, _BUSY)
            self.close_connection = True
            self.status = f"{e.status} {HTTPStatus(e.status).phrase}"
            log.info("bad request from %s: %s", self.address[0] if isinstance(self.address, tuple) else "-",
                     e.message)
            self.sock.settimeout(timeouts.body)
            self.send(error_response(e), quiet=True)
            self.linger = not isinstance(e, RequestTimeout)
            self.log_request()
            return False
        server._enter(self, _BUSY)
        return True

    def _parse_head(self) -> None:
        """Parse the request line and headers.  Raises :class:`RequestInvalid`
        (400), :class:`URITooLong` (414) or :class:`HeadersTooLarge` (431)."""
        readline = self.rfile.readline
        raw = readline(_MAX_REQUEST_LINE + 1)
        if len(raw) > _MAX_REQUEST_LINE:
            self.requestline = raw[:200].decode("latin-1")
            raise URITooLong(detail={"limit": _MAX_REQUEST_LINE})
        self.requestline = raw.decode("latin-1").rstrip("\r\n")
        if not raw.endswith(b"\n"):
            raise RequestInvalid("the connection closed inside the request line")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in _VERSIONS or not _TOKEN.fullmatch(words[0]):
            raise RequestInvalid("invalid request line", detail={"line": self.requestline[:200]})
        self.command, self.path, self.request_version = words

        env: dict[str, str] = {}
        total = 0
        for _ in range(_MAX_HEADERS + 1):
            raw = readline(_MAX_HEADER_LINE + 1)
            if raw == b"\r\n" or raw == b"\n":
                break
            total += len(raw)
            if len(raw) > _MAX_HEADER_LINE or total > _MAX_HEADER_BYTES:
                raise HeadersTooLarge(detail={"line_limit": _MAX_HEADER_LINE, "total_limit": _MAX_HEADER_BYTES})
            if not raw.endswith(b"\n"):
                raise RequestInvalid("the connection closed inside the request headers")
            if raw[0] in b" \t":
                # Obsolete line folding (RFC 9112 5.2): rejected rather than
                # guessed at, as it is a request smuggling vector.
                raise RequestInvalid("folded header line")
            name, colon, value = raw.decode("latin-1").partition(":")
            value = value.strip(" \t\r\n")
            if not colon or not _TOKEN.fullmatch(name) or "\r" in value:
                raise RequestInvalid("invalid header line", detail={"line": raw[:200].decode("latin-1")})
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
            raise HeadersTooLarge(f"more than {_MAX_HEADERS} request headers")

        self.content_length = None
        self.chunked = "HTTP_TRANSFER_ENCODING" in env
        if self.chunked:
            if env["HTTP_TRANSFER_ENCODING"].lower() != "chunked":
                raise RequestInvalid("unsupported Transfer-Encoding",
                                     detail={"Transfer-Encoding": env["HTTP_TRANSFER_ENCODING"][:100]})
            env.pop("CONTENT_LENGTH", None)  # chunked framing wins (RFC 9112 6.3)
        elif "CONTENT_LENGTH" in env:
            length = env["CONTENT_LENGTH"]
            # Digits only: int() would also take "+5", " 5", "5_0" and "5,5"
            # (a repeated header), each a framing disagreement with a proxy.
            if not (length.isascii() and length.isdigit()):
                raise RequestInvalid("invalid Content-Length", detail={"Content-Length": length[:100]})
            self.content_length = int(length)
            if self.content_length and self.command == "HEAD":
                raise RequestInvalid("a HEAD request with a body")

        connection = env.get("HTTP_CONNECTION", "").lower()
        tokens = {t.strip() for t in connection.split(",")} if connection else ()
        if self.request_version == "HTTP/1.1":
            self.close_connection = "close" in tokens
        else:
            self.close_connection = "keep-alive" not in tokens
        self.expect_continue = env.get("HTTP_EXPECT", "").lower() == "100-continue"
        self.env = env

    # -- one request ---------------------------------------------------------------

    def _environ(self) -> dict:
        server = self.server
        env = dict(server.base_env)
        env.update(self.env)
        path, _, query = self.path.partition("?")
        env["REQUEST_METHOD"] = self.command
        env["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = self.request_version
        if isinstance(self.address, tuple):
            env["REMOTE_ADDR"] = str(self.address[0])
            env["REMOTE_PORT"] = str(self.address[1])
        self.input = _Input(self, self.content_length, self.chunked)
        env["wsgi.input"] = self.input
        env["wsgi.input_terminated"] = True
        return env

    def _respond(self) -> None:
        self.sock.settimeout(self.server.timeouts.body)
        self.environ = env = self._environ()
        result = None
        try:
            result = self.server.application(env, self.start_response)
            if self.sendfile_ok and self.response_headers is not None:
                file_body = file_body_of(result)
                if file_body is not None:
                    self._send_head(b"")
                    if self.body_left and not self.chunked_response:
                        self._sendfile(file_body)
                    # Whatever sendfile left (nothing, normally) is read below.
            for chunk in result:
                if chunk:
                    self.write(chunk)
            if not self.headers_sent:
                self._send_head(b"")
            if self.chunked_response:
                self.send(b"0\r\n\r\n")
            if self.body_left:  # the app sent less than its Content-Length
                self.close_connection = True
        except Exception as e:
            self.close_connection = True
            if isinstance(e, OSError) and self.client_gone:
                # The client hung up or stopped reading: nobody to answer.
                log.debug("connection from %s ended while serving %r: %s",
                          self.env.get("REMOTE_ADDR", "-"), self.requestline, e)
            elif isinstance(e, RegistryError):  # from an app that renders no errors of its own
                if not self.headers_sent:
                    self.status = f"{e.status} {HTTPStatus(e.status).phrase}"
                    self.send(error_response(e), quiet=True)
            else:
                # Through logging rather than the hub's stderr printer, so
                # that JSON logs stay JSON.
                log.error("error while serving %r", self.requestline, exc_info=True)
                if not self.headers_sent:
                    self.status = "500 Internal Server Error"
                    self.send(error_response(Unknown()), quiet=True)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.error("error closing the response of %r", self.requestline, exc_info=True)
        if not self.input.done and not self.client_gone:
            # The app did not read the whole body.  Drop a small rest and
            # carry on; else close, lingering so the answer is not lost.
            if self.close_connection or self.input.unread_over(_DISCARD_MAX) \
                    or not self.input.discard(_DISCARD_MAX):
                self.close_connection = True
                self.linger = True
        self.log_request()

    def start_response(self, status: str, headers: list, exc_info=None):
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        self.status = status
        self.code = int(status[:3])
        self.response_headers = headers
        return self.write

    def _send_head(self, data: bytes) -> None:
        """The status line and headers, with ``data`` (the first body chunk)
        behind them when it is small."""
        # A body too big to drop after the response means closing: say so.
        close = self.close_connection or self.server.draining or self.input.unread_over(_DISCARD_MAX)
        length = None
        has_date = False
        out = bytearray(b"HTTP/1.1 ")
        out += self.status.encode("latin-1")
        out += b"\r\n"
        for name, value in self.response_headers:
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower == "date":
                has_date = True
            elif lower == "x-request-id":
                self.request_id = value
            elif lower == "connection":
                if "close" in value.lower():
                    close = True
                continue  # written below, once
            if "\n" in value or "\r" in value:
                raise ValueError(f"newline in response header {name!r}")
            out += f"{name}: {value}\r\n".encode("latin-1")
        if not has_date:
            out += b"Date: " + _http_date() + b"\r\n"
        self.chunked_response = False
        no_body = self.code in (204, 304) or self.code < 200
        if length is not None:
            if self.command != "HEAD" and not no_body and length.isdigit():
                self.body_left = int(length)
        elif not no_body:
            if self.request_version == "HTTP/1.0":
                close = True  # the body ends with the connection
            else:
                out += b"Transfer-Encoding: chunked\r\n"
                self.chunked_response = self.command != "HEAD"  # a HEAD response has no body at all
        if close:
            self.close_connection = True
            out += b"Connection: close\r\n"
        elif self.request_version == "HTTP/1.0":
            out += b"Connection: keep-alive\r\n"
        out += b"\r\n"
        if data and self.command != "HEAD" and len(data) <= _COALESCE_MAX:
            out += self._frame(data)
            data = b""
        self.headers_sent = True
        self.send(out)
        if data and self.command != "HEAD":
            self.send(self._frame(data))

    def _frame(self, data: bytes) -> bytes:
        if self.body_left is not None:
            self.body_left -= len(data)
        if self.chunked_response:
            return b"%x\r\n%b\r\n" % (len(data), data)
        return data

    def write(self, data: bytes) -> None:
        """A body chunk (also the WSGI ``write`` callable); the first one
        sends the headers."""
        if self.response_headers is None:
            raise AssertionError("write() before start_response()")
        if not self.headers_sent:
            self._send_head(data)
        elif data and self.command != "HEAD":
            self.send(self._frame(data))

    def _send_some(self, data) -> int:
        while True:
            try:
                return self.sock.send(data)
            except TimeoutError:
                # Room in the send buffer comes back in large steps (a third
                # of it), so a slow client that keeps reading can outlast one
                # wait: it has stalled only if nothing left the send queue
                # since the last look.
                left = _unsent(self.sock)
                if left is None or (self._queued is not None and left >= self._queued):
                    raise
                self._queued = left

    @property
    def sendfile_ok(self) -> bool:
        """Whether a file body may go out through ``sendfile``: plain HTTP
        (TLS needs the bytes in user space to encrypt them) and a body."""
        return self.server.ssl_context is None and self.command != "HEAD"

    def _sendfile(self, body: FileBody) -> None:
        """Send the rest of ``body`` with ``os.sendfile``: the kernel copies
        it from the page cache to the socket, Python never sees the bytes.
        The socket is non-blocking (gevent), so a full send buffer gives
        ``EAGAIN`` and the greenlet waits until it drains, within
        ``http.timeouts.body`` as :meth:`send` does.  A file system that
        cannot ``sendfile`` leaves the rest to the caller's copy loop."""
        out_fd, in_fd = self.sock.fileno(), body.fileno()
        position, end = body.offset + body.sent, body.offset + body.count
        timeout = self.server.timeouts.body
        try:
            if end - position > _SENDFILE_BIG:
                # A large send buffer: fewer EAGAIN round trips through the
                # event loop per blob (the kernel caps it at net.core.wmem_max).
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SNDBUF)
            advised = position
            while position < end:
                if advised < end and advised - position < _SENDFILE_STEP:
                    # Keep one to two steps ahead asked for, so that a blob
                    # not in the page cache is read from the disk while the
                    # previous step is sent, rather than by sendfile (which
                    # would wait for the disk on the event loop).
                    upto = min(end, position + 2 * _SENDFILE_STEP)
                    _read_ahead(in_fd, advised, upto - advised)
                    advised = upto
                try:
                    n = os.sendfile(out_fd, in_fd, position, min(end - position, _SENDFILE_STEP))
                except BlockingIOError:
                    try:
                        wait_write(out_fd, timeout)
                    except TimeoutError:
                        left = _unsent(self.sock)
                        if left is None or (self._queued is not None and left >= self._queued):
                            raise
                        self._queued = left
                    continue
                except OSError as e:
                    if e.errno in _NO_SENDFILE:
                        return  # the copy loop sends the rest instead
                    raise
                if not n:
                    return  # the file is shorter than said: the copy loop ends it too
                position += n
                body.sent += n
                self.response_length += n
                if self.body_left is not None:
                    self.body_left -= n
            self._queued = None
        except OSError:
            self.client_gone = True
            raise

    def send(self, data: bytes, quiet: bool = False) -> None:
        # One plain send() usually takes it all.  Not sendall(): its timeout
        # bounds the whole call, where http.timeouts.body bounds a wait in
        # which the client takes nothing.
        try:
            sent = self._send_some(data)
            if sent < len(data):
                view = memoryview(data)
                while sent < len(view):
                    self._queued = _unsent(self.sock)
                    sent += self._send_some(view[sent:])
                self._queued = None
        except OSError:
            self.client_gone = True
            if not quiet:
                raise
            return
        self.response_length += len(data)

    def log_request(self) -> None:
        if not self.server.access_log or not access_log.isEnabledFor(logging.INFO):
            return
        env = self.environ or {}
        # The app's view of the client (behind trusted proxies, the forwarded address).
        client = env.get("REMOTE_ADDR") or (self.address[0] if isinstance(self.address, tuple) else self.address)
        status = (self.status or "000").split(" ", 1)[0]
        took = time.time() - self.started
        # From the request line: it is this request's even when it was malformed.
        words = self.requestline.split()
        method, target, version = words if len(words) == 3 else ("-", " ".join(words)[:200], "-")
        path, question, query = target.partition("?")
        target = path + question + redact_query(query)  # never a password or token from the URL
        user_agent = self.env.get("HTTP_USER_AGENT")
        access_log.info('%s "%s %s %s" %s %s %.1fms %s', client or "-", method, target, version, status,
                        self.response_length or "-", took * 1000, json.dumps(user_agent or "-"),
                        extra={"request_id": self.request_id, ACCESS_FIELDS: {
                            "remote_addr": client, "method": method, "path": target, "protocol": version,
                            "status": int(status) if status.isdigit() else 0,
                            "bytes_out": self.response_length or 0,
                            "duration_ms": round(took * 1000, 3), "user_agent": user_agent,
                        }})


class RegistryServer:
    """Serves a WSGI app on a listening socket: HTTP/1.1 with keep-alive,
    ``TCP_NODELAY`` and ``SO_KEEPALIVE`` on each connection, native TLS
    when given an ``ssl_context`` (anything with an ``SSLContext``'s
    ``wrap_socket``), the access log through :mod:`logging`, the timeouts
    of :class:`Timeouts`, and at most ``max_connections`` open connections
    (further lowered to fit the open-files limit, see :func:`fd_budget`).

    At the bound, a new connection first closes the connection that has
    been idle between requests the longest, else the one that has waited
    longest for its request headers; when every connection is serving a
    request, the new one is answered 503 ``UNAVAILABLE`` and closed.  An
    ``EMFILE`` on accept sheds the same way and never stops the server.
    Everything the server answers on its own (400, 408, 414, 431, 500,
    503) carries the distribution spec's JSON error body.

    :meth:`start` begins accepting; :meth:`drain` stops gracefully.
    """

    def __init__(self, listener: socket.socket, application: Callable, *, access_log: bool = True,
                 environ: Mapping[str, Any] | None = None, ssl_context: Any = None,
                 timeouts: Timeouts = Timeouts(), max_connections: int = DEFAULT_MAX_CONNECTIONS):
        self.listener = listener
        self.application = application
        self.access_log = access_log
        self.ssl_context = ssl_context
        self.timeouts = timeouts
        self.max_connections = min(max_connections, fd_budget())
        if self.max_connections < max_connections:
            log.info("at most %d open connections per worker (http.maxconnections is %d): "
                     "the open-files limit is %d", self.max_connections, max_connections,
                     resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        address = listener.getsockname()
        self.base_env = {
            "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "cargohold", "SCRIPT_NAME": "",
            "SERVER_NAME": str(address[0]), "SERVER_PORT": str(address[1]),
            "wsgi.version": (1, 0), "wsgi.url_scheme": "https" if ssl_context is not None else "http",
            "wsgi.errors": sys.stderr, "wsgi.multithread": False, "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        self.base_env.update(environ or {})
        self.group = Group()
        self.draining = False
        self.connections: dict[_Connection, None] = {}  # open and not being shed
        self._queues = {_IDLE: {}, _WAITING: {}}  # oldest first: the order to shed in
        self._acceptor: gevent.Greenlet | None = None
        self._warned = {}

    # -- bookkeeping -----------------------------------------------------------------

    def _enter(self, conn: _Connection, state: str) -> None:
        queues = self._queues
        if conn.state != _BUSY:
            queues[conn.state].pop(conn, None)
        conn.state = state
        if state != _BUSY:
            queues[state][conn] = None

    def _leave(self, conn: _Connection) -> None:
        self.connections.pop(conn, None)
        if conn.state != _BUSY:
            self._queues[conn.state].pop(conn, None)

    def _shed(self) -> bool:
        """Close the longest-idle connection, else the one waiting longest
        for its request; returns whether there was one."""
        for state in (_IDLE, _WAITING):
            queue = self._queues[state]
            if queue:
                conn = next(iter(queue))
                del queue[conn]
                conn.state = _BUSY  # out of the queues
                self.connections.pop(conn, None)
                conn.greenlet.kill(_Shed, block=False)
                return True
        return False

    def _warn(self, key: str, message: str, *args) -> None:
        now = time.monotonic()
        if now - self._warned.get(key, -_LOG_EVERY) >= _LOG_EVERY:
            self._warned[key] = now
            log.warning(message, *args)

    # -- accepting -------------------------------------------------------------------

    def start(self) -> None:
        """Begin accepting connections (in a greenlet of the running hub)."""
        self._acceptor = gevent.spawn(self._accept_loop)

    def _accept_loop(self) -> None:
        listener = self.listener
        while True:
            try:
                sock, address = listener.accept()
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._warn("emfile", "cannot accept connections (%s) with %d open; closing idle ones",
                               e.strerror, len(self.connections))
                    gevent.sleep(0 if self._shed() else 0.05)
                elif self.listener.fileno() < 0:
                    return
                elif e.errno not in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN):
                    log.error("accept failed: %s", e)
                    gevent.sleep(0.1)
                continue
            configure_accepted(sock)
            if len(self.connections) >= self.max_connections:
                if self._shed():
                    gevent.sleep(0)  # let the shed connection close first
                else:
                    self._refuse(sock)
                    continue
            conn = _Connection(self, sock, address)
            self.connections[conn] = None
            conn.greenlet = self.group.spawn(conn.run)

    def _refuse(self, sock) -> None:
        self._warn("full", "%d connections open, all serving requests (http.maxconnections); "
                   "refusing new ones with 503", len(self.connections))
        try:
            if self.ssl_context is None:
                sock.settimeout(0)
                sock.send(error_response(Unavailable("too many open connections; try again")))
        except OSError:
            pass
        finally:
            sock.close()

    # -- stopping --------------------------------------------------------------------

    def close(self) -> None:
        """Stop accepting (closes this process's copy of the listener)."""
        if self._acceptor is not None:
            self._acceptor.kill(block=True)
            self._acceptor = None
        self.listener.close()

    def drain(self, timeout: float, hurry: gevent.event.Event | None = None) -> bool:
        """Stop accepting, close connections that wait for a request, and
        wait up to ``timeout`` seconds (less if ``hurry`` is set) for
        requests in flight, whose responses then close their connections;
        then kill what is left.  Returns whether everything finished in time."""
        self.draining = True
        self.close()
        while self._shed():
            pass
        deadline = time.monotonic() + timeout
        while len(self.group) and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            self.group.join(timeout=min(0.05, max(0.0, deadline - time.monotonic())))
        if len(self.group):
            log.warning("killing %d request(s) still running after the drain timeout", len(self.group))
            self.group.kill(block=True, timeout=1)
            return False
        return True
