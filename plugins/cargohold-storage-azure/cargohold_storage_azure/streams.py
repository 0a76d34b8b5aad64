"""Streaming readers and block writers over Azure block blobs.

A block blob's content is its committed block list: blocks are staged
(``Put Block``, invisible) and made visible all at once by ``Put Block
List``, which also discards every block of that blob left uncommitted.  Both
classes hold at most one block (writers) or one read chunk (readers) in
memory.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from azure.core import MatchConditions

from cargohold.storage.driver import FileWriter, StorageError
from cargohold_storage_azure.client import READ_CHUNK
from cargohold_storage_azure.errors import translated

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

    from cargohold_storage_azure.driver import AzureDriver


def new_block_id() -> str:
    """A unique block id.  Azure requires every block id of one blob to have
    the same length, so all ids this driver makes are 32 hex digits."""
    return uuid.uuid4().hex


BLOCK_ID_LENGTH = len(new_block_id())


class BlobReader:
    """Reads one version of a blob (pinned by its ETag) from ``offset``, one
    ranged GET of at most :data:`READ_CHUNK` bytes at a time.  A blob replaced
    while it is being read fails the next read with :class:`StorageError`
    rather than mixing two versions."""

    def __init__(self, blob: "BlobClient", path: str, size: int, etag: str, offset: int):
        self._blob = blob
        self._path = path
        self._size = size
        self._etag = etag
        self._pos = offset  # of the next byte to fetch
        self._buffer = b""
        self._start = 0  # of the unread part of _buffer
        self._closed = False

    def _fetch(self) -> bool:
        if self._pos >= self._size:
            return False
        length = min(READ_CHUNK, self._size - self._pos)
        with translated(self._path):
            data = self._blob.download_blob(
                offset=self._pos, length=length, max_concurrency=1,
                etag=self._etag, match_condition=MatchConditions.IfNotModified,
            ).readall()
        if len(data) != length:
            raise StorageError(f"short read: {len(data)} of {length} bytes at {self._pos}", path=self._path)
        self._pos += length
        self._buffer, self._start = data, 0
        return True

    def read(self, n: int | None = -1) -> bytes:
        if self._closed:
            raise StorageError("reader is closed", path=self._path)
        if n is None or n < 0:
            parts = [self._buffer[self._start:]]
            self._buffer, self._start = b"", 0
            while self._fetch():
                parts.append(self._buffer)
            self._buffer = b""
            return b"".join(parts)
        if self._start >= len(self._buffer) and not self._fetch():
            return b""
        if self._start == 0 and n >= len(self._buffer):
            data, self._buffer = self._buffer, b""  # hand the whole chunk over, no copy
            return data
        data = self._buffer[self._start:self._start + n]
        self._start += len(data)
        return data

    def close(self) -> None:
        self._closed = True
        self._buffer = b""

    def __enter__(self) -> "BlobReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlockWriter(FileWriter):
    """Streams into staged blocks of ``blocksize`` bytes.

    New file: content that fits in one block is put on the target directly
    at commit (:meth:`AzureDriver.put_block`).  Larger content is staged on
    a temporary blob under ``~tmp/`` (concurrent writers to one path must
    not discard each other's uncommitted blocks), committed there, then
    copied server-side over the target and the temporary blob deleted.

    Append: new blocks are staged on the target itself (one append writer
    per path, by contract) and committed after its existing blocks.  On
    cancel they stay uncommitted: invisible, dropped by the next commit.
    """

    def __init__(self, driver: "AzureDriver", path: str, append: bool):
        self._driver = driver
        self._path = path
        self._key = driver.key(path)
        self._blocksize = driver.blocksize
        self._buffer = bytearray()
        self._blocks: list[str] = []  # staged by this writer, in order
        self._done = False
        self._append = append
        self._temp: str | None = None  # new files: the temporary blob, once a block is staged
        if append:
            self._base, self._size = driver.committed_blocks(path)
        else:
            self._base, self._size = [], 0

    @property
    def size(self) -> int:
        return self._size

    def _stage_target(self) -> str:
        if self._append:
            return self._key
        if self._temp is None:
            self._temp = self._driver.temp_key()
        return self._temp

    def _stage(self, data: bytes) -> None:
        block_id = new_block_id()
        self._driver.stage_block(self._stage_target(), block_id, data, self._path)
        self._blocks.append(block_id)

    def write(self, data) -> int:
        if self._done:
            raise StorageError("writer already finished", path=self._path)
        view = memoryview(data).cast("B")
        n = len(view)
        try:
            while len(view):
                if not self._buffer and len(view) >= self._blocksize:
                    # A whole block in hand: send it without buffering.
                    self._stage(bytes(view[:self._blocksize]))
                    view = view[self._blocksize:]
                    continue
                room = self._blocksize - len(self._buffer)
                self._buffer += view[:room]
                view = view[room:]
                if len(self._buffer) >= self._blocksize:
                    block, self._buffer = bytes(self._buffer), bytearray()
                    self._stage(block)
        except BaseException:
            self._fail()
            raise
        self._size += n
        return n

    def commit(self) -> None:
        if self._done:
            raise StorageError("writer already finished", path=self._path)
        try:
            if self._append:
                if self._buffer:
                    self._stage(bytes(self._buffer))
                self._driver.commit_blocks(self._key, self._base + self._blocks, self._path)
            elif self._temp is None:
                self._driver.put_block(self._key, bytes(self._buffer), self._path)
            else:
                if self._buffer:
                    self._stage(bytes(self._buffer))
                self._driver.commit_blocks(self._temp, self._blocks, self._path)
                temp, self._temp = self._temp, None
                try:
                    self._driver.copy(temp, self._key, self._path)
                finally:
                    self._driver.delete_temp(temp, committed=True)
        except BaseException:
            self._fail()
            raise
        self._buffer = bytearray()
        self._done = True

    def cancel(self) -> None:
        if not self._done:
            self._fail()

    def close(self) -> None:
        self.cancel()

    def _fail(self) -> None:
        """Drop this writer's bytes.  Staged blocks of an append stay
        uncommitted on the target (invisible); a temporary blob is removed."""
        self._buffer = bytearray()
        self._done = True
        if self._temp is not None:
            temp, self._temp = self._temp, None
            self._driver.delete_temp(temp, committed=False)
