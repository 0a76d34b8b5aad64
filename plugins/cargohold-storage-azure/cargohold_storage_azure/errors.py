"""Turning Azure SDK and transport exceptions into the driver contract's
errors, so none of them reaches the core."""

from __future__ import annotations

import contextlib
from typing import Iterator

import requests
import urllib3
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from cargohold.storage.driver import PathNotFound, StorageError

#: Transport failures that can escape the SDK while a response body streams.
TRANSPORT_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def error_code(exc: BaseException) -> str:
    """The service's error code (``BlobNotFound``, ``InvalidBlockList``...), or ''."""
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


def is_blob_not_found(exc: BaseException) -> bool:
    """A 404 about the blob itself (not a missing container)."""
    return isinstance(exc, ResourceNotFoundError) and error_code(exc) != "ContainerNotFound"


def to_storage_error(exc: BaseException, path: str | None) -> StorageError:
    """The contract's error for ``exc``, raised while working on ``path``."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ResourceNotFoundError):
        if error_code(exc) == "ContainerNotFound":
            return StorageError("the configured container does not exist", path=path)
        return PathNotFound(path=path)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, *TRANSPORT_ERRORS)):
        return StorageError(f"Azure Blob Storage unreachable: {_first_line(exc)}", path=path)
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or "no status"
        return StorageError(f"Azure Blob Storage answered {status} {error_code(exc)}".rstrip(), path=path)
    return StorageError(f"Azure Blob Storage: {type(exc).__name__}: {_first_line(exc)}", path=path)


@contextlib.contextmanager
def translated(path: str | None) -> Iterator[None]:
    """Re-raise SDK and transport errors of the block as :class:`StorageError`
    (:class:`PathNotFound` for a missing blob), keeping the cause chained."""
    try:
        yield
    except (AzureError, *TRANSPORT_ERRORS) as exc:
        raise to_storage_error(exc, path) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
