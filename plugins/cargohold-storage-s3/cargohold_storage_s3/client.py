"""The boto3 S3 client the driver talks through, and the one place where
botocore's exceptions become the driver contract's errors.

The client is built with bounded retries (botocore's ``standard`` mode:
exponential backoff with jitter, at most ``maxretries`` retries) and short
connect/read timeouts, so a backend that is down or hangs turns into a
:class:`StorageError` (503 for the client) within seconds instead of holding
requests open.  botocore's sockets are plain ``socket`` objects, so under
``cargohold serve`` (gevent, everything monkey-patched first) every S3 call
yields to other requests while it waits on the network.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from cargohold.storage.driver import PathNotFound, StorageError
from cargohold_storage_s3.settings import S3Settings

#: Codes S3 uses for "nothing at this key".
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


#: Requests in which S3 itself copies or concatenates data
#: (``CompleteMultipartUpload``, ``CopyObject``, ``UploadPartCopy``) may take
#: this many times ``readtimeout`` before answering; see :func:`make_clients`.
SLOW_READ_FACTOR = 10


def make_clients(settings: S3Settings):
    """Two thread- and greenlet-safe S3 clients for ``settings``, sharing one
    session (and so its loaded service model): one for ordinary requests,
    and one with a longer read timeout for requests in which S3 copies or
    concatenates data.  Those may answer only after minutes for large
    objects; timing them out early would retry work that is still running
    (and, for a completion, fail although it succeeded)."""
    session = boto3.session.Session(
        aws_access_key_id=settings.accesskey,
        aws_secret_access_key=settings.secretkey,
    )

    def client(read_timeout: float):
        config = Config(
            region_name=settings.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if settings.forcepathstyle else "auto"},
            retries={"mode": "standard", "total_max_attempts": settings.maxretries + 1},
            connect_timeout=settings.connecttimeout,
            read_timeout=read_timeout,
            # Room for a multipart copy's parallel part copies next to requests.
            max_pool_connections=max(16, min(settings.multipartcopymaxconcurrency, 128)),
            # Only what S3 requires: many S3-compatible stores reject the newer
            # default checksum headers.  Bytes are verified by digest anyway.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return session.client("s3", endpoint_url=settings.endpoint_url, use_ssl=settings.secure,
                              verify=not settings.skipverify, config=config)

    return client(settings.readtimeout), client(settings.readtimeout * SLOW_READ_FACTOR)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_not_found(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in NOT_FOUND_CODES or status == 404 and error_code(exc) != "NoSuchBucket"


@contextlib.contextmanager
def s3_errors(operation: str, path: str | None = None) -> Iterator[None]:
    """Translate botocore errors raised inside the block: a missing key
    becomes :class:`PathNotFound`, anything else (S3 error replies, a
    backend that cannot be reached or timed out, missing credentials) a
    :class:`StorageError` saying what failed."""
    try:
        yield
    except StorageError:
        raise
    except ClientError as exc:
        if is_not_found(exc):
            raise PathNotFound(path=path) from exc
        message = exc.response.get("Error", {}).get("Message", "")
        raise StorageError(f"S3 {operation} failed: {error_code(exc)}: {message}".rstrip(": "),
                           path=path) from exc
    except BotoCoreError as exc:
        raise StorageError(f"S3 {operation} failed: {exc}", path=path) from exc
    except (OSError, Urllib3Error) as exc:  # a connection reset while streaming a body
        raise StorageError(f"S3 {operation} failed: {type(exc).__name__}: {exc}", path=path) from exc
