"""Content-addressed blobs and their links into repositories."""

from __future__ import annotations

from typing import Iterator

from cargohold.errors import BlobUnknown
from cargohold.filebody import FileBody
from cargohold.gc.usage import UsageRecorder
from cargohold.lru import LRU
from cargohold.registry.catalog import Listings
from cargohold.storage import paths
from cargohold.storage.driver import PathNotFound, StorageDriver

READ_CHUNK = 1 << 20


class BlobStore:
    """Blobs live once in the global store and are visible to a repository
    only through its link.  Stored blob bytes never change (the path is the
    digest), so their sizes are cached per process; whether bytes are there
    at all, before relying on them to store something, is always asked of
    the store (:meth:`claim`), since the garbage collector may remove them.

    Every check a request acts on goes through ``usage`` first (see
    :mod:`cargohold.gc.usage`): :meth:`rely_on_link` and :meth:`claim`."""

    def __init__(self, driver: StorageDriver, usage: UsageRecorder | None = None, listings: Listings | None = None):
        self.driver = driver
        self.usage = usage or UsageRecorder(driver)
        #: The catalog, told of repositories links are written into.
        self.listings = listings or Listings(driver)
        self._sizes = LRU(65536)

    def size(self, digest: str) -> int | None:
        """Size of the blob in the global store, or ``None`` if absent."""
        size = self._sizes.get(digest)
        if size is None:
            try:
                size = self.driver.stat(paths.blob_data(digest)).size
            except PathNotFound:
                return None
            self._sizes.put(digest, size)
        return size

    def is_linked(self, name: str, digest: str) -> bool:
        try:
            self.driver.stat(paths.layer_link(name, digest))
            return True
        except PathNotFound:
            return False

    def links(self, name: str) -> list[str]:
        """The digests of every blob linked into repository ``name`` (empty
        for a repository without blobs, or none at all)."""
        found = []
        try:
            alg_dirs = self.driver.list(paths.layers(name))
        except PathNotFound:
            return found
        for alg_dir in alg_dirs:
            try:
                found += [paths.digest_from_leaf_pair(d) for d in self.driver.list(alg_dir)]
            except PathNotFound:
                continue
        return found

    def rely_on_link(self, name: str, digest: str) -> bool:
        """:meth:`is_linked`, for a request that acts on the answer (a HEAD
        before skipping an upload, a mount, a manifest naming the blob): the
        use is recorded first, and a link missing because the collector is
        condemning the blob is looked for again once it has settled."""
        return self.usage.check(digest, lambda: self.is_linked(name, digest))

    def claim(self, digest: str, touched: bool = False) -> bool:
        """Before storing bytes under ``digest``: record the use (always
        written; ``touched`` when the caller already wrote it with
        ``usage.touch(digest, force=True)``), wait out a collector
        condemning it, then say whether the bytes are in the store (asked of
        the store, never the cache).  When this returns True the bytes stay
        for at least the grace window."""
        if not touched:
            self.usage.touch(digest, force=True)
        self.usage.wait_settled(digest)
        try:
            size = self.driver.stat(paths.blob_data(digest)).size
        except PathNotFound:
            self._sizes.pop(digest)
            return False
        self._sizes.put(digest, size)
        return True

    def stat_in(self, name: str, digest: str) -> int:
        """Size of a blob as seen from repository ``name``; BLOB_UNKNOWN if
        the repository has no link to it."""
        if not self.rely_on_link(name, digest):
            raise BlobUnknown(detail={"digest": digest})
        size = self.size(digest)
        if size is None:
            raise BlobUnknown(detail={"digest": digest})
        return size

    def link(self, name: str, digest: str) -> None:
        self.driver.put_content(paths.layer_link(name, digest), digest.encode())
        self.listings.repository_used(name)

    def unlink(self, name: str, digest: str) -> None:
        """Remove the repository's link (the bytes stay for other repositories)."""
        try:
            self.driver.delete(paths.layer_dir(name, digest))
        except PathNotFound:
            raise BlobUnknown(detail={"digest": digest})

    def open(self, digest: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Stream ``length`` bytes (or to the end) from ``offset``.  The
        reader is opened before the first chunk is requested, so a missing
        blob fails before the response starts: BLOB_UNKNOWN when its bytes are
        gone (removed by another process after this one cached its size)."""
        try:
            reader = self.driver.reader(paths.blob_data(digest), offset)
        except PathNotFound:
            self._sizes.pop(digest)
            raise BlobUnknown(detail={"digest": digest}) from None
        return _chunks(reader, length)

    def open_file(self, digest: str, offset: int, length: int) -> FileBody | None:
        """``length`` bytes from ``offset`` as a :class:`FileBody` (the
        server may hand the file to the kernel), or ``None`` when the driver
        keeps no local files: then use :meth:`open`.  BLOB_UNKNOWN as for
        :meth:`open`."""
        try:
            file = self.driver.local_file(paths.blob_data(digest))
        except PathNotFound:
            self._sizes.pop(digest)
            raise BlobUnknown(detail={"digest": digest}) from None
        return None if file is None else FileBody(file, offset, length)

    def redirect_url(self, digest: str, method: str = "GET") -> str | None:
        return self.driver.redirect_url(paths.blob_data(digest), method)

    def put_small(self, digest: str, data: bytes) -> None:
        """Store small content (a manifest) under its digest, if not there."""
        if not self.claim(digest):
            self.driver.put_content(paths.blob_data(digest), data)
            self._sizes.put(digest, len(data))

    def get_small(self, digest: str) -> bytes:
        return self.driver.get_content(paths.blob_data(digest))

    def remember_size(self, digest: str, size: int) -> None:
        self._sizes.put(digest, size)


def _chunks(reader, length: int | None) -> Iterator[bytes]:
    try:
        remaining = length
        while remaining is None or remaining > 0:
            n = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
            chunk = reader.read(n)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        reader.close()
