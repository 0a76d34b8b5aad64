"""The streaming writer: bytes go to S3 as they arrive, in multipart parts.

Written bytes collect in a buffer; each time it holds ``chunksize`` bytes
they are sent as the next part of a multipart upload (started with the first
full part), so at most about one part is held in memory whatever the file's
size.  ``commit`` sends the rest as the last part and completes the upload;
a file that never filled a part is stored with one ``PutObject``.  Either way
the object appears all at once, only on ``commit``.  ``cancel`` aborts the
multipart upload, so S3 keeps no parts.
"""

from __future__ import annotations

import logging

from cargohold.storage.driver import FileWriter, StorageError
from cargohold_storage_s3.client import s3_errors

log = logging.getLogger(__name__)

_OPEN, _COMMITTED, _CANCELLED = "open", "committed", "cancelled"


class S3Writer(FileWriter):
    """Writes the object ``key``.  ``initial_size`` is the size of the
    content it continues (for append writers, which write a segment) and
    ``skip_empty`` leaves an empty commit without an object (an empty
    segment adds nothing).  ``metadata`` is stored with the object (see
    :data:`cargohold_storage_s3.layout.APPENDABLE`)."""

    def __init__(self, driver, key: str, path: str, initial_size: int = 0, skip_empty: bool = False,
                 metadata: dict | None = None):
        self._client = driver.client
        self._slow_client = driver.slow_client
        self._bucket = driver.settings.bucket
        self._chunksize = driver.settings.chunksize
        self._extra = dict(driver.upload_args, Metadata=metadata) if metadata else driver.upload_args
        self._key = key
        self._path = path
        self._initial = initial_size
        self._skip_empty = skip_empty
        self._buffer = bytearray()
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._state = _OPEN

    @property
    def size(self) -> int:
        return self._initial + self._written

    def write(self, data) -> int:
        self._check_open("write")
        n = memoryview(data).nbytes
        self._buffer += data
        self._written += n
        try:
            while len(self._buffer) >= self._chunksize:
                part = bytes(memoryview(self._buffer)[:self._chunksize])
                del self._buffer[:self._chunksize]
                self._send_part(part)
        except BaseException:
            self.cancel()
            raise
        return n

    def commit(self) -> None:
        self._check_open("commit")
        try:
            if self._upload_id is None:
                if self._buffer or not self._skip_empty:
                    with s3_errors("PutObject", self._path):
                        self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer),
                                                **self._extra)
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer))
                with s3_errors("CompleteMultipartUpload", self._path):
                    self._slow_client.complete_multipart_upload(
                        Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                        MultipartUpload={"Parts": self._parts})
        except BaseException:
            self.cancel()
            raise
        self._buffer = bytearray()
        self._state = _COMMITTED

    def cancel(self) -> None:
        if self._state != _OPEN:
            return
        self._state = _CANCELLED
        self._buffer = bytearray()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            try:
                with s3_errors("AbortMultipartUpload", self._path):
                    self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=upload_id)
            except StorageError as exc:
                # Never visible either way; a bucket lifecycle rule removes
                # the parts of uploads that stay incomplete.
                log.warning("could not abort the multipart upload of %s: %s", self._path, exc)

    def close(self) -> None:
        self.cancel()

    def _check_open(self, what: str) -> None:
        if self._state != _OPEN:
            raise StorageError(f"{what} on a writer that was {self._state}", path=self._path)

    def _send_part(self, body: bytes) -> None:
        if self._upload_id is None:
            with s3_errors("CreateMultipartUpload", self._path):
                self._upload_id = self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key, **self._extra)["UploadId"]
        number = len(self._parts) + 1
        with s3_errors("UploadPart", self._path):
            resp = self._client.upload_part(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id,
                                            PartNumber=number, Body=body)
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})
