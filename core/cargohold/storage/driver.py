"""The storage driver contract.

A storage driver is a dumb key/value store for byte streams, addressed by
*paths*.  It knows nothing about blobs, manifests or repositories: the layout
lives in :mod:`cargohold.storage.paths` and the registry logic in
:mod:`cargohold.registry`.  Every driver must pass
:class:`cargohold.testing.storage.StorageDriverSuite`.

Paths
    A path is ``/`` or ``/`` followed by components separated by ``/``; each
    component matches ``[A-Za-z0-9._-]+`` and is not ``.`` or ``..``; there is
    no trailing slash.  The core validates paths (see
    :class:`cargohold.storage.checked.CheckedDriver`) before a driver sees
    them, so drivers may assume well-formed input.

Files and directories
    Only files are stored.  A directory exists while at least one file lies
    below it; deleting the last file makes its (now empty) directories vanish,
    as they do on object stores.  ``/`` always exists and is a directory.
    Operations on a file (``get_content``, ``put_content``, ``reader``,
    ``writer``, ``move``, ``delete``, ``redirect_url``) take a path other than
    ``/``.  A path is never both a file and a directory: writing a file where
    a directory is, or below a file, is the caller's bug (the layout never
    does it) and drivers raise :class:`StorageError` where they notice.

Errors
    Drivers raise :class:`PathNotFound`, :class:`InvalidPath`,
    :class:`InvalidOffset` or :class:`Unsupported` where those apply and
    :class:`StorageError` (or a subclass) for anything else, such as a backend
    that is down.  Never a bare ``OSError`` or a client library's exception.

Atomicity and concurrency
    ``put_content`` and the ``commit`` of a new-file writer make the new
    content visible all at once: a reader sees the old content or the new,
    never a mix, and a crash before the call returns leaves the old content
    (or nothing).  When several writers replace the same path concurrently,
    the last commit wins and the content is entirely one of theirs.  Appending
    is not atomic (see :class:`FileWriter`): callers keep at most one append
    writer per path open at a time.  ``move`` replaces ``dst`` atomically
    where the backend allows it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import BinaryIO, Iterator


class StorageError(Exception):
    """Any storage failure.  ``driver`` names the driver that raised it (the
    core fills it in); ``path`` is the path involved, if any."""

    def __init__(self, message: str = "", path: str | None = None, driver: str | None = None):
        self.path = path
        self.driver = driver
        super().__init__(message or self.__class__.__name__)

    def __str__(self) -> str:
        parts = [super().__str__()]
        if self.path:
            parts.append(f"path={self.path}")
        if self.driver:
            parts.append(f"driver={self.driver}")
        return " ".join(parts)


class PathNotFound(StorageError):
    """Nothing is stored at (or below) the path."""


class InvalidPath(StorageError):
    """The path is malformed (see the module docstring)."""


class InvalidOffset(StorageError):
    """An offset is negative or beyond the end of the file."""


class Unsupported(StorageError):
    """The driver cannot perform this operation."""


class FileExists(StorageError):
    """:meth:`StorageDriver.create` found the path already taken."""


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """What ``stat`` returns.  ``size`` is 0 for directories; ``modtime`` is a
    POSIX timestamp (seconds, float)."""

    path: str
    size: int
    modtime: float
    is_dir: bool


class FileWriter(abc.ABC):
    """A streaming writer returned by :meth:`StorageDriver.writer`.

    ``write`` appends bytes (any bytes-like object) and returns how many were
    taken, always all of them.  ``size`` is the file's total size so far: the
    previous content (when opened with ``append=True``) plus everything
    written.  ``commit`` ends a successful write, ``cancel`` a failed one;
    ``close`` releases resources and cancels a writer that was neither
    committed nor cancelled, so ``with driver.writer(p) as w: ...; w.commit()``
    leaves nothing behind when the body raises.  Writing or committing after
    ``commit``, ``cancel`` or ``close`` raises :class:`StorageError`;
    ``cancel`` and ``close`` then do nothing.  A writer whose ``write`` or
    ``commit`` raised may already be cancelled; the caller still closes it.

    New file (``append=False``): nothing is visible at the path (nor its
    parent directories) before ``commit``, which replaces any old content
    atomically and durably.  ``cancel`` leaves the path as it was.

    Append (``append=True``): the writer continues after the committed
    content.  ``commit`` makes the appended bytes durable and visible.
    ``cancel`` restores the previous length.  A driver may append in place,
    so until ``commit`` readers may already see some appended bytes, and a
    crash before ``commit`` may leave some of them.  Resumable uploads
    therefore commit each chunk (``writer(p, append=exists)``, ``write``
    calls, ``commit``) and the next chunk opens a new append writer.
    """

    @abc.abstractmethod
    def write(self, data: bytes) -> int: ...

    @property
    @abc.abstractmethod
    def size(self) -> int: ...

    @abc.abstractmethod
    def commit(self) -> None: ...

    @abc.abstractmethod
    def cancel(self) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> "FileWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()


class StorageDriver(abc.ABC):
    """The interface every storage backend implements.

    ``name`` identifies the driver in errors and metrics.  Drivers must be
    safe to use from many greenlets (and, for shared backends, many processes)
    at once.
    """

    name: str = "unnamed"

    @abc.abstractmethod
    def get_content(self, path: str) -> bytes:
        """Return the whole content of a small file.  :class:`PathNotFound` if
        absent.  Not for blobs: use :meth:`reader`."""

    @abc.abstractmethod
    def put_content(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path`` atomically and durably, replacing any
        previous content."""

    def put_volatile(self, path: str, data: bytes) -> None:
        """:meth:`put_content` for state the registry can afford to lose in
        a power failure (an upload session that has not received any
        bytes yet): as atomic, visible to every process at once and kept
        across a crash of the registry's processes, but a driver may skip
        forcing it to disk.  The default is :meth:`put_content`."""
        self.put_content(path, data)

    def delete_volatile(self, path: str) -> None:
        """:meth:`delete` of volatile state (see :meth:`put_volatile`): a
        power failure may bring the deleted files back.  The default is
        :meth:`delete`."""
        self.delete(path)

    def create(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path`` only if nothing is there: a conditional
        create, atomic against every process sharing the store.  When several
        callers create the same path concurrently exactly one succeeds; the
        others get :class:`FileExists` and the content is the winner's, whole.
        :class:`FileExists` too when the file existed before.  Like
        :meth:`put_content`, the content is durable and appears all at once.
        The garbage collector's lease relies on it (filesystem: a hard link
        of a finished temporary file; S3 and Azure: ``If-None-Match: *``).
        The default raises :class:`Unsupported`."""
        raise Unsupported(f"driver {self.name!r} offers no conditional create", path=path)

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """Open ``path`` for streaming reads from ``offset``.  The result has
        ``read(n=-1)`` (at most ``n`` bytes, ``b""`` at the end) and
        ``close()`` and is a context manager.  An offset equal
        to the size gives an empty stream; a larger or negative one raises
        :class:`InvalidOffset`.  :class:`PathNotFound` if absent."""

    @abc.abstractmethod
    def writer(self, path: str, append: bool = False) -> FileWriter:
        """Open a :class:`FileWriter` at ``path``.  With ``append=True`` the
        writer continues after the existing content (which must exist, else
        :class:`PathNotFound`); otherwise it starts a new file that replaces
        the old content on ``commit``.  See :class:`FileWriter`."""

    @abc.abstractmethod
    def stat(self, path: str) -> FileInfo:
        """Describe a file or directory.  :class:`PathNotFound` if absent.
        ``modtime`` is the last modification for files.  For directories it
        is either 0.0 (unknown) or a time that changes whenever a direct
        child is added or removed: the core caches listings on that promise
        (:mod:`cargohold.storage.listcache`)."""

    @abc.abstractmethod
    def list(self, path: str) -> list[str]:
        """Full paths of the direct children (files and directories) of the
        directory ``path``, in lexical order.  ``list('/')`` of an empty store
        is ``[]``; :class:`PathNotFound` for any other directory that does not
        exist, and for a file (nothing lies below it, as on object stores).
        Lexical order is byte order of the paths."""

    def walk(self, path: str) -> Iterator[FileInfo]:
        """Every file and directory below ``path``, depth first, in lexical
        order (a directory comes right before its contents).
        :class:`PathNotFound` as for :meth:`list`.  The default walks with :meth:`list` and :meth:`stat`; drivers
        may do better."""
        for child in self.list(path):
            info = self.stat(child)
            yield info
            if info.is_dir:
                yield from self.walk(child)

    @abc.abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Move the file ``src`` to ``dst``, replacing ``dst`` and creating its
        directories; ``src``'s directories vanish if it was their last file.
        Server-side: never download and re-upload.  :class:`PathNotFound` if
        ``src`` is absent.  Moving a directory is not supported."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Delete a file, or a directory and everything below it; directories
        left empty vanish.  :class:`PathNotFound` if nothing is there.  Only
        whole components match: deleting ``/a`` never touches ``/ab``."""

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client can use to fetch ``path`` directly from the
        backend (e.g. a presigned URL), or ``None`` when the driver does not
        offer one and the registry should serve the bytes itself."""
        return None

    def local_directory(self) -> str | None:
        """A directory on this machine, beside the driver's stored content,
        where the core may keep state of its own that needs a local disk
        (the notification queue when ``notifications.queuedir`` is unset);
        ``None`` when the storage is not local (object stores)."""
        return None

    def local_file(self, path: str) -> BinaryIO | None:
        """The file stored at ``path`` opened as an operating-system file on
        this machine (unbuffered, with a ``fileno()`` whose bytes are the
        content from offset 0), or ``None`` when the driver keeps no local
        files (object stores).  The server hands such a file to the kernel
        (``sendfile``) instead of copying its bytes through Python; the
        caller closes it.  An open file keeps its bytes readable even if the
        path is deleted meanwhile.  :class:`PathNotFound` if absent."""
        return None

    def close(self) -> None:
        """Release connections and other resources at shutdown."""
