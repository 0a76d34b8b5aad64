"""The streaming reader: a file's pieces (base object, then segments) read
one ranged ``GetObject`` at a time.

Each request carries ``If-Match`` with the ETag seen when the reader was
opened, so a file replaced meanwhile fails the read instead of mixing old
and new bytes.  A connection that breaks in the middle of a body is resumed
from the byte where it stopped, a bounded number of times.
"""

from __future__ import annotations

from cargohold.storage.driver import StorageError
from cargohold_storage_s3.client import s3_errors
from cargohold_storage_s3.layout import Piece

READ_ALL_CHUNK = 1 << 20


class S3Reader:
    """Reads the concatenation of ``pieces`` from byte ``offset``."""

    def __init__(self, driver, pieces: list[Piece], offset: int, path: str):
        self._client = driver.client
        self._bucket = driver.settings.bucket
        self._resumes = driver.settings.maxretries
        self._path = path
        # (piece, first byte to read) for every piece at or after the offset.
        self._todo: list[tuple[Piece, int]] = []
        for piece in pieces:
            if offset < piece.size:
                self._todo.append((piece, offset))
            offset = max(0, offset - piece.size)
        self._body = None
        self._piece: Piece | None = None
        self._pos = 0
        self._closed = False

    def read(self, n: int = -1) -> bytes:
        if self._closed:
            raise StorageError("read on a closed reader", path=self._path)
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(READ_ALL_CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        if n == 0:
            return b""
        while True:
            if self._body is None and not self._open_next():
                return b""
            data = self._read_body(n)
            if data:
                self._pos += len(data)
                return data
            if self._pos < self._piece.size:
                raise StorageError(f"S3 GetObject ended {self._piece.size - self._pos} bytes early",
                                   path=self._path)
            self._release()

    def close(self) -> None:
        self._closed = True
        self._release()

    def __enter__(self) -> "S3Reader":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _open_next(self) -> bool:
        if not self._todo:
            return False
        self._piece, self._pos = self._todo.pop(0)
        self._open_body()
        return True

    def _open_body(self) -> None:
        piece = self._piece
        args = {"Bucket": self._bucket, "Key": piece.key, "Range": f"bytes={self._pos}-{piece.size - 1}"}
        if piece.etag:
            args["IfMatch"] = piece.etag
        with s3_errors("GetObject", self._path):
            self._body = self._client.get_object(**args)["Body"]

    def _read_body(self, n: int) -> bytes:
        for attempt in range(self._resumes + 1):
            try:
                with s3_errors("GetObject", self._path):
                    return self._body.read(n)
            except StorageError:
                self._release()
                if attempt == self._resumes:
                    raise
                self._open_body()  # resume where the broken body stopped
        return b""  # not reached

    def _release(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            try:
                body.close()
            except Exception:  # a broken connection is dropped anyway
                pass
