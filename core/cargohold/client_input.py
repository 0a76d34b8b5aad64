"""Request bodies that end early are the client's error, not the server's.

A client may declare ``Content-Length: N`` and close its side after fewer
bytes, cut a chunked body off mid-chunk, or garble the chunk framing.  The
server then raises an ``OSError`` (:class:`BodyEndedEarly`,
:class:`BodyMalformed`, or the socket's own) from ``wsgi.input.read``, which would
reach the app's last-resort handler as an unexpected error: a 500, a
traceback in the log and a report to the error-reporting plugins.
:class:`ClientInputMiddleware` wraps ``wsgi.input`` so that every reader of
the body (upload streaming, manifest pushes, form parsing in a plugin's
blueprint) gets a :class:`~cargohold.errors.RegistryError` instead, rendered
like any other bad request.
"""

from __future__ import annotations

from cargohold.errors import BlobUploadInvalid, RegistryError, SizeInvalid

#: Where :class:`ClientInputMiddleware` leaves the request's :class:`ClientInput`:
#: its ``received`` is the one count of body bytes read (metrics and
#: ``cargohold_request_finished``'s ``bytes_in`` use it).
BODY_KEY = "cargohold.body"


class BodyEndedEarly(OSError):
    """Raised by the server's ``wsgi.input`` when the connection ends before
    the body does (fewer bytes than ``Content-Length``, no last chunk)."""


class BodyMalformed(OSError):
    """Raised by the server's ``wsgi.input`` for chunked framing that breaks
    the rules (a bad chunk size, a missing chunk end, too many trailers)."""


def _is_malformed_framing(error: OSError) -> bool:
    return isinstance(error, BodyMalformed)


class ClientInput:
    """``wsgi.input`` for a request with a body: ``read``, ``readline``,
    ``readlines`` and iteration as the wrapped stream, except that an
    ``OSError`` becomes SIZE_INVALID (the body ended before the declared
    length or the last chunk: the client stopped sending) or
    BLOB_UPLOAD_INVALID (malformed chunked framing), both 400.
    ``received`` counts the body bytes read so far."""

    __slots__ = ("_stream", "_declared", "received")

    def __init__(self, stream, declared: int | None):
        self._stream = stream
        self._declared = declared
        self.received = 0

    def _error(self, error: OSError) -> RegistryError:
        reason = str(error)[:200]
        if _is_malformed_framing(error):
            return BlobUploadInvalid("malformed chunked request body",
                                     detail={"received": self.received, "reason": reason})
        if self._declared is not None:
            return SizeInvalid(
                f"the request body ended after {self.received} of the {self._declared} bytes "
                "its Content-Length declared: the client stopped sending",
                detail={"received": self.received, "declared": self._declared},
            )
        return SizeInvalid("the request body ended before its last chunk: the client stopped sending",
                           detail={"received": self.received})

    def _counted(self, method, size: int | None) -> bytes:
        try:
            data = method() if size is None or size < 0 else method(size)
        except OSError as e:
            raise self._error(e) from None
        self.received += len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        return self._counted(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._counted(self._stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        lines = []
        total = 0
        while hint is None or hint <= 0 or total < hint:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
        return lines

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


class ClientInputMiddleware:
    """Wraps ``wsgi.input`` in :class:`ClientInput` for requests that carry
    a body (a non-zero ``Content-Length`` or a ``Transfer-Encoding``), and
    leaves it in ``environ[BODY_KEY]``."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        length = environ.get("CONTENT_LENGTH")
        if (length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ:
            try:
                declared = int(length) if length else None
            except ValueError:
                declared = None  # the API answers SIZE_INVALID for it
            stream = environ.get("wsgi.input")
            if stream is not None:
                environ["wsgi.input"] = environ[BODY_KEY] = ClientInput(stream, declared)
        return self.wsgi_app(environ, start_response)
