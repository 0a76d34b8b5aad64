"""The S3 storage driver."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterator

from cargohold.storage.driver import (
    FileExists,
    FileInfo,
    FileWriter,
    InvalidOffset,
    PathNotFound,
    StorageDriver,
    StorageError,
)
from cargohold_storage_s3 import parts as parts_module
from cargohold_storage_s3.client import error_code, make_clients, s3_errors
from cargohold_storage_s3.layout import (
    APPENDABLE_METADATA,
    Keys,
    Piece,
    StoredFile,
    collect,
    is_appendable,
    is_hidden,
    segment_key,
)
from cargohold_storage_s3.reader import S3Reader
from cargohold_storage_s3.settings import MAX_PART_SIZE, S3Settings
from cargohold_storage_s3.writer import S3Writer

log = logging.getLogger(__name__)

#: DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000
#: Buffered (merged) parts of a multipart assembly in flight at once: each
#: holds up to 5 MiB in memory.
BUFFERED_PARTS_IN_FLIGHT = 2
#: Conditional creates tried while S3 reports a conflicting one in flight.
CREATE_ATTEMPTS = 5


class S3Driver(StorageDriver):
    """Stores path ``/a/b`` as the object ``<rootdirectory>/a/b`` of one
    bucket (see :mod:`cargohold_storage_s3.layout` for appended files).

    * ``put_content`` is one ``PutObject``; writers stream multipart uploads
      (:mod:`cargohold_storage_s3.writer`); both are atomic.
    * Append writers add a segment object per commit, so a resumable upload
      costs no copying while it grows, and every process sharing the bucket
      sees the same upload.
    * ``move`` copies server-side (``CopyObject``, or a multipart upload of
      ``UploadPartCopy`` parts for large or segmented files) and then
      deletes the source.
    * ``redirect_url`` presigns a ``GetObject`` (or ``HeadObject``) URL that
      expires after ``redirectexpiry``.
    * Directories are key prefixes; their ``modtime`` is 0.0 (unknown).
    * A file without segments (every file but a growing upload) is read,
      stat-ed and deleted with one request on its key, never a listing
      (see :data:`cargohold_storage_s3.layout.APPENDABLE`).

    Requests in which S3 copies data go through :attr:`slow_client`, whose
    read timeout is longer (see :func:`cargohold_storage_s3.client.make_clients`).
    """

    name = "s3"

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self.client, self.slow_client = make_clients(settings)
        self.keys = Keys(settings.prefix)
        self.upload_args: dict = {}
        if settings.encrypt:
            self.upload_args["ServerSideEncryption"] = "aws:kms" if settings.keyid else "AES256"
            if settings.keyid:
                self.upload_args["SSEKMSKeyId"] = settings.keyid
        if settings.storageclass:
            self.upload_args["StorageClass"] = settings.storageclass

    def __repr__(self) -> str:
        return f"S3Driver(bucket={self.settings.bucket!r}, prefix={self.settings.prefix!r})"

    # -- listing helpers ------------------------------------------------------------

    def _list(self, prefix: str, delimiter: str | None = None, max_keys: int | None = None,
              path: str | None = None) -> Iterator[dict]:
        """``ListObjectsV2`` pages under ``prefix``, following continuation
        tokens lazily (a caller that stops early saves the later pages)."""
        args = {"Bucket": self.settings.bucket, "Prefix": prefix}
        if delimiter:
            args["Delimiter"] = delimiter
        if max_keys:
            args["MaxKeys"] = max_keys
        while True:
            with s3_errors("ListObjectsV2", path):
                page = self.client.list_objects_v2(**args)
            yield page
            if not page.get("IsTruncated"):
                return
            args["ContinuationToken"] = page["NextContinuationToken"]

    def _entries(self, prefix: str, path: str | None = None) -> Iterator[dict]:
        for page in self._list(prefix, path=path):
            yield from page.get("Contents", ())

    def _scan(self, path: str) -> StoredFile:
        """The file at ``path`` (its base object and segments)."""
        return collect(self.keys.key(path), self._entries(self.keys.key(path), path))

    def _file(self, path: str) -> StoredFile:
        found = self._scan(path)
        if found.base is None:
            raise PathNotFound(path=path)
        return found

    def _head(self, path: str) -> tuple[StoredFile | None, bool]:
        """``HeadObject`` on the path's key: ``(file, appendable)``, where
        ``file`` is the whole file unless the object is appendable (then
        only a listing finds its segments), and ``None`` when there is no
        object at the key (a directory, or nothing)."""
        key = self.keys.key(path)
        try:
            with s3_errors("HeadObject", path):
                head = self.client.head_object(Bucket=self.settings.bucket, Key=key)
        except PathNotFound:
            return None, False
        piece = Piece(key, head["ContentLength"], head.get("ETag", "").strip('"'), head["LastModified"].timestamp())
        return StoredFile(base=piece), is_appendable(head.get("Metadata"))

    def _find(self, path: str) -> StoredFile:
        """The file at ``path``: one ``HeadObject``, and a listing only for an
        appendable object; :class:`PathNotFound` if there is none."""
        found, appendable = self._head(path)
        if found is None:
            raise PathNotFound(path=path)
        return self._file(path) if appendable else found

    def _is_dir(self, path: str) -> bool:
        page = next(self._list(self.keys.dir_prefix(path), max_keys=1, path=path))
        return page.get("KeyCount", 0) > 0

    def _delete_keys(self, keys: list[str], path: str) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = keys[i:i + DELETE_BATCH]
            with s3_errors("DeleteObjects", path):
                resp = self.client.delete_objects(Bucket=self.settings.bucket, Delete={
                    "Objects": [{"Key": k} for k in batch], "Quiet": True})
            errors = [e for e in resp.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
            if errors:
                first = errors[0]
                raise StorageError(f"S3 DeleteObjects failed for {len(errors)} key(s), first "
                                   f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}", path=path)

    # -- small files -----------------------------------------------------------------

    def get_content(self, path: str) -> bytes:
        """One ``GetObject`` (``NoSuchKey`` is :class:`PathNotFound`); an
        appendable object is read again with its segments."""
        with s3_errors("GetObject", path):
            resp = self.client.get_object(Bucket=self.settings.bucket, Key=self.keys.key(path))
            body = resp["Body"]
            try:
                if not is_appendable(resp.get("Metadata")):
                    return body.read()
            finally:
                body.close()
        found = self._file(path)
        with S3Reader(self, found.pieces, 0, path) as reader:
            return reader.read()

    def put_content(self, path: str, data: bytes) -> None:
        with s3_errors("PutObject", path):
            self.client.put_object(Bucket=self.settings.bucket, Key=self.keys.key(path), Body=bytes(data),
                                   **self.upload_args)

    def create(self, path: str, data: bytes) -> None:
        """``PutObject`` with ``If-None-Match: *``: S3 answers 412 when the key
        exists (409 when a concurrent conditional write is in flight: asked
        again, it settles into a 412 or a success)."""
        from botocore.exceptions import ClientError

        for _ in range(CREATE_ATTEMPTS):
            with s3_errors("PutObject", path):
                try:
                    self.client.put_object(Bucket=self.settings.bucket, Key=self.keys.key(path),
                                           Body=bytes(data), IfNoneMatch="*", **self.upload_args)
                    return
                except ClientError as exc:
                    code = error_code(exc)
                    if code in ("PreconditionFailed", "412"):
                        raise FileExists(path=path) from None
                    if code != "ConditionalRequestConflict":
                        raise
        raise StorageError("S3 PutObject kept conflicting with concurrent conditional writes", path=path)

    # -- streams ---------------------------------------------------------------------

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        found = self._find(path)
        if offset < 0 or offset > found.size:
            raise InvalidOffset(f"offset {offset} is beyond the end ({found.size} bytes)", path=path)
        return S3Reader(self, found.pieces, offset, path)

    def writer(self, path: str, append: bool = False) -> FileWriter:
        if not append:
            return S3Writer(self, self.keys.key(path), path, metadata=APPENDABLE_METADATA)
        found = self._file(path)
        if found.stale:
            self._delete_keys(found.stale, path)
        if not found.segments:
            found = self._make_appendable(path, found)
        key = segment_key(found.base, found.last_seq + 1)
        return S3Writer(self, key, path, initial_size=found.size, skip_empty=True)

    def _make_appendable(self, path: str, found: StoredFile) -> StoredFile:
        """Before the first segment of a base object: mark it appendable
        (see :data:`~cargohold_storage_s3.layout.APPENDABLE`) by copying it
        onto itself with the metadata, unless it has it already.  Marking
        changes the base's generation, so it is looked up again."""
        if self._head(path)[1]:
            return found
        base = found.base
        with s3_errors("CopyObject", path):
            self.slow_client.copy_object(Bucket=self.settings.bucket, Key=base.key,
                                         CopySource={"Bucket": self.settings.bucket, "Key": base.key},
                                         CopySourceIfMatch=base.etag, MetadataDirective="REPLACE",
                                         Metadata=APPENDABLE_METADATA, **self.upload_args)
        return self._file(path)

    # -- metadata ----------------------------------------------------------------------

    def stat(self, path: str) -> FileInfo:
        if path == "/":
            return FileInfo("/", 0, 0.0, True)
        found, appendable = self._head(path)
        if appendable:
            found = self._scan(path)
        if found is not None and found.base is not None:
            return FileInfo(path, found.size, found.modtime, False)
        if self._is_dir(path):
            return FileInfo(path, 0, 0.0, True)
        raise PathNotFound(path=path)

    def list(self, path: str) -> list[str]:
        prefix = self.keys.dir_prefix(path)
        children = set()
        for page in self._list(prefix, delimiter="/", path=path):
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(prefix):-1]
                if name and not is_hidden(name):
                    children.add(name)
            for entry in page.get("Contents", ()):
                name = entry["Key"][len(prefix):]
                if name and not is_hidden(name):
                    children.add(name)
        if not children and path != "/":
            raise PathNotFound(path=path)
        base = "" if path == "/" else path
        return sorted(f"{base}/{name}" for name in children)

    def walk(self, path: str) -> Iterator[FileInfo]:
        """One recursive listing instead of a request per directory; the
        entries are sorted into depth-first lexical order."""
        prefix = self.keys.dir_prefix(path)
        files: dict[str, list] = {}
        base_key = None
        for entry in self._entries(prefix, path):
            key = entry["Key"]
            if key == prefix or key.endswith("/"):
                continue
            if not is_hidden(key[len(prefix):]):
                base_key = key
                files[self.keys.path(key)] = [entry["Size"], entry["LastModified"].timestamp(), [entry]]
            elif base_key is not None and key.startswith(base_key + "!"):
                files[self.keys.path(base_key)][2].append(entry)
        if not files and path != "/":
            raise PathNotFound(path=path)
        infos: dict[str, FileInfo] = {}
        for file_path, (_, _, entries) in files.items():
            found = collect(self.keys.key(file_path), entries)
            infos[file_path] = FileInfo(file_path, found.size, found.modtime, False)
            parent = file_path.rpartition("/")[0]
            while parent and parent != path and parent not in infos:
                infos[parent] = FileInfo(parent, 0, 0.0, True)
                parent = parent.rpartition("/")[0]
        for file_path in sorted(infos, key=lambda p: p.split("/")):
            yield infos[file_path]

    # -- move and delete ------------------------------------------------------------------

    def move(self, src: str, dst: str) -> None:
        found = self._file(src)  # the source is mostly an upload, with segments
        dst_key = self.keys.key(dst)
        size = found.size
        if len(found.pieces) == 1 and size <= min(self.settings.multipartcopythresholdsize, MAX_PART_SIZE):
            base = found.base
            with s3_errors("CopyObject", src):
                self.slow_client.copy_object(Bucket=self.settings.bucket, Key=dst_key,
                                        CopySource={"Bucket": self.settings.bucket, "Key": base.key},
                                        CopySourceIfMatch=base.etag, MetadataDirective="REPLACE",
                                        **self.upload_args)
        else:
            self._assemble(found.pieces, dst_key, src)
        self._delete_keys(found.all_keys, src)

    def _assemble(self, pieces: list[Piece], dst_key: str, path: str) -> None:
        """Write the concatenation of ``pieces`` to ``dst_key`` with one
        multipart upload, copying parts in parallel (see :mod:`.parts`)."""
        plan = parts_module.plan(pieces, self.settings.multipartcopychunksize)
        bucket = self.settings.bucket
        if len(plan) == 1 and not plan[0].copy:  # small: one buffer, one PutObject
            body = self._read_ranges(plan[0], path)
            with s3_errors("PutObject", path):
                self.client.put_object(Bucket=bucket, Key=dst_key, Body=body, **self.upload_args)
            return
        with s3_errors("CreateMultipartUpload", path):
            upload_id = self.client.create_multipart_upload(Bucket=bucket, Key=dst_key,
                                                            **self.upload_args)["UploadId"]
        buffered = threading.BoundedSemaphore(BUFFERED_PARTS_IN_FLIGHT)

        def send(number: int, part: parts_module.Part) -> dict:
            if part.copy:
                r = part.ranges[0]
                with s3_errors("UploadPartCopy", path):
                    resp = self.slow_client.upload_part_copy(
                        Bucket=bucket, Key=dst_key, UploadId=upload_id, PartNumber=number,
                        CopySource={"Bucket": bucket, "Key": r.piece.key},
                        CopySourceRange=f"bytes={r.start}-{r.end - 1}", CopySourceIfMatch=r.piece.etag)
                return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}
            with buffered:
                body = self._read_ranges(part, path)
                with s3_errors("UploadPart", path):
                    resp = self.client.upload_part(Bucket=bucket, Key=dst_key, UploadId=upload_id,
                                                   PartNumber=number, Body=body)
            return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            workers = max(1, min(self.settings.multipartcopymaxconcurrency, len(plan)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="s3-copy") as pool:
                futures = [pool.submit(send, i + 1, part) for i, part in enumerate(plan)]
                done = [f.result() for f in futures]
            with s3_errors("CompleteMultipartUpload", path):
                self.slow_client.complete_multipart_upload(Bucket=bucket, Key=dst_key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": done})
        except BaseException:
            try:
                with s3_errors("AbortMultipartUpload", path):
                    self.client.abort_multipart_upload(Bucket=bucket, Key=dst_key, UploadId=upload_id)
            except StorageError as exc:
                log.warning("could not abort the multipart upload of %s: %s", dst_key, exc)
            raise

    def _read_ranges(self, part: parts_module.Part, path: str) -> bytes:
        """The bytes of a buffered part (at most one minimum part size)."""
        buffer = bytearray()
        for r in part.ranges:
            with s3_errors("GetObject", path):
                body = self.client.get_object(Bucket=self.settings.bucket, Key=r.piece.key,
                                              Range=f"bytes={r.start}-{r.end - 1}", IfMatch=r.piece.etag)["Body"]
                try:
                    buffer += body.read()
                finally:
                    body.close()
        if len(buffer) != part.size:
            raise StorageError(f"S3 GetObject returned {len(buffer)} bytes, expected {part.size}", path=path)
        return bytes(buffer)

    def delete(self, path: str) -> None:
        """A plain file: ``HeadObject`` and ``DeleteObject``.  An appendable
        one, or a directory: a listing and ``DeleteObjects``."""
        found, appendable = self._head(path)
        if found is not None and not appendable:
            with s3_errors("DeleteObject", path):
                self.client.delete_object(Bucket=self.settings.bucket, Key=found.base.key)
            return
        keys = self._scan(path).all_keys if appendable else []
        if found is None:  # a directory, if anything: a path is never both
            dir_prefix = self.keys.dir_prefix(path)
            keys += [e["Key"] for e in self._entries(dir_prefix, path)]
        if not keys:
            raise PathNotFound(path=path)
        self._delete_keys(keys, path)

    # -- redirects -------------------------------------------------------------------------

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A presigned URL for a plain object; ``None`` for a file that
        still has segments (no single object holds its bytes)."""
        found = self._find(path)
        if found.segments:
            return None
        operation = "head_object" if method.upper() == "HEAD" else "get_object"
        with s3_errors("presign", path):
            return self.client.generate_presigned_url(
                operation, Params={"Bucket": self.settings.bucket, "Key": found.base.key},
                ExpiresIn=int(self.settings.redirectexpiry))

    # -- lifecycle -------------------------------------------------------------------------

    def check_bucket(self) -> None:
        """``HeadBucket``: raises ``ValueError`` naming the key when the
        bucket is missing or the credentials are refused; a backend that
        cannot be reached is only logged (the registry answers 503 until it
        is back)."""
        from botocore.exceptions import ClientError

        try:
            with s3_errors("HeadBucket"):
                self.client.head_bucket(Bucket=self.settings.bucket)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError):
                status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 404:
                    raise ValueError(f"storage.s3.bucket: bucket {self.settings.bucket!r} does not exist") from None
                if status in (401, 403):
                    raise ValueError(f"storage.s3.accesskey: access to bucket {self.settings.bucket!r} denied; "
                                     "check accesskey/secretkey (or the default credential chain)") from None
            log.warning("S3 bucket %r not reachable at start-up (%s); requests get 503 until it is",
                        self.settings.bucket, exc)
        except PathNotFound:
            raise ValueError(f"storage.s3.bucket: bucket {self.settings.bucket!r} does not exist") from None

    def close(self) -> None:
        self.client.close()
        self.slow_client.close()
