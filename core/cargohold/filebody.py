"""A WSGI response body that is a range of an open file.

:class:`FileBody` is an ordinary iterable of byte chunks (any WSGI server can
send it), and it also tells a server that knows it where the bytes are: an
operating-system file, an offset and a count.  cargohold's own server
(:mod:`cargohold.server.wsgi`) then lets the kernel copy them from the page
cache to the socket (``sendfile``) on plain-HTTP connections, with no copy
through Python; over TLS it iterates like any other server.

Middleware that wraps the response iterable hides the file from the server
unless it offers the wrapped body as ``file_body`` (see
:func:`file_body_of`); the response is then still correct, just copied.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Iterator

from cargohold.blocking import offload

BLOCK = 1 << 20


class FileBody:
    """``count`` bytes of ``file`` from ``offset``, as a WSGI response body.

    ``file`` is an open file with ``fileno()`` (for instance what
    :meth:`~cargohold.storage.driver.StorageDriver.local_file` returns).  The
    body owns it: ``close()`` closes it, as the server does after the
    response.  Iterating reads ``block`` bytes at a time with ``os.pread``
    in the thread pool (:func:`~cargohold.blocking.offload`: a read that
    misses the page cache must not stall the other requests).  A server
    that sends the bytes itself adds what it sent to :attr:`sent`;
    iterating counts there too."""

    __slots__ = ("file", "offset", "count", "block", "sent")

    def __init__(self, file: BinaryIO, offset: int, count: int, block: int = BLOCK):
        self.file = file
        self.offset = offset
        self.count = count
        self.block = block
        self.sent = 0

    def fileno(self) -> int:
        return self.file.fileno()

    def __iter__(self) -> Iterator[bytes]:
        fd = self.file.fileno()
        position, end = self.offset + self.sent, self.offset + self.count
        while position < end:
            chunk = offload(os.pread, fd, min(self.block, end - position), position)
            if not chunk:
                return  # the file shrank: the server sees a short body
            position += len(chunk)
            self.sent += len(chunk)
            yield chunk

    def close(self) -> None:
        self.file.close()


def file_body_of(result) -> FileBody | None:
    """The :class:`FileBody` behind a WSGI response iterable: ``result``
    itself, or what a wrapping middleware offers as its ``file_body``
    attribute (itself possibly a wrapper).  ``None`` for any other body."""
    for _ in range(8):  # a short chain of wrappers at most
        if isinstance(result, FileBody):
            return result
        result = getattr(result, "file_body", None)
        if result is None:
            return None
    return None
