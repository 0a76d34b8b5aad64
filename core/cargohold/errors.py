"""Registry errors: one exception class per error code of the distribution spec.

Raise these anywhere (API handlers, the registry layer, plugins); the app renders
them in one place as ``{"errors": [{"code", "message", "detail"}]}`` with the
class's HTTP status.  Anything that is not a :class:`RegistryError` is reported
and rendered as ``UNKNOWN`` (500) without leaking internals to the client.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base class.  ``code`` and ``status`` are per class; ``message`` is the
    human-readable default and may be overridden per instance; ``detail`` is any
    JSON-serialisable value that helps the client; ``headers`` are added to the
    response (e.g. ``WWW-Authenticate`` or ``Retry-After``)."""

    code = "UNKNOWN"
    status = 500
    message = "unknown error"

    def __init__(self, message: str | None = None, detail: Any = None, headers: dict | None = None):
        if message is not None:
            self.message = message
        self.detail = detail
        self.headers = dict(headers or {})
        super().__init__(self.message)

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "detail": self.detail}


class Unknown(RegistryError):
    code, status, message = "UNKNOWN", 500, "unknown error"


class Unavailable(RegistryError):
    code, status, message = "UNAVAILABLE", 503, "service unavailable"


class BlobUnknown(RegistryError):
    code, status, message = "BLOB_UNKNOWN", 404, "blob unknown to registry"


class BlobUploadInvalid(RegistryError):
    code, status, message = "BLOB_UPLOAD_INVALID", 400, "blob upload invalid"


class BlobUploadUnknown(RegistryError):
    code, status, message = "BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"


class DigestInvalid(RegistryError):
    code, status, message = "DIGEST_INVALID", 400, "provided digest did not match uploaded content"


class ManifestBlobUnknown(RegistryError):
    code, status, message = "MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"


class ManifestInvalid(RegistryError):
    code, status, message = "MANIFEST_INVALID", 400, "manifest invalid"


class ManifestUnknown(RegistryError):
    code, status, message = "MANIFEST_UNKNOWN", 404, "manifest unknown to registry"


class NameInvalid(RegistryError):
    code, status, message = "NAME_INVALID", 400, "invalid repository name"


class NameUnknown(RegistryError):
    code, status, message = "NAME_UNKNOWN", 404, "repository name not known to registry"


class SizeInvalid(RegistryError):
    code, status, message = "SIZE_INVALID", 400, "provided length did not match content length"


class RangeInvalid(RegistryError):
    """Out-of-order or malformed ``Content-Range`` on a chunk (416)."""

    code, status, message = "RANGE_INVALID", 416, "invalid content range"


class PaginationNumberInvalid(RegistryError):
    code, status, message = "PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"


class TagInvalid(RegistryError):
    code, status, message = "TAG_INVALID", 400, "manifest tag did not match URI"


class ManifestTooLarge(RegistryError):
    """The manifest body exceeds the configured limit (413)."""

    code, status, message = "SIZE_INVALID", 413, "manifest exceeds the size limit"


class Unauthorized(RegistryError):
    code, status, message = "UNAUTHORIZED", 401, "authentication required"


class Denied(RegistryError):
    code, status, message = "DENIED", 403, "requested access to the resource is denied"


class Unsupported(RegistryError):
    code, status, message = "UNSUPPORTED", 405, "the operation is unsupported"


class TooManyRequests(RegistryError):
    code, status, message = "TOOMANYREQUESTS", 429, "too many requests"


class NotFound(RegistryError):
    """A route that does not exist under ``/v2/`` (the spec's code list has
    no better fit than UNSUPPORTED)."""

    code, status, message = "UNSUPPORTED", 404, "no such endpoint"


class MethodNotAllowed(RegistryError):
    code, status, message = "UNSUPPORTED", 405, "method not allowed on this endpoint"


# -- answered by the HTTP server itself, before any app code runs ---------------
# The spec's code list has nothing for a request that is not valid HTTP; like
# NotFound, these use UNSUPPORTED.  The connection is closed after each.


class RequestInvalid(RegistryError):
    """A request line, header or body framing that is not valid HTTP/1.x (400)."""

    code, status, message = "UNSUPPORTED", 400, "malformed HTTP request"


class RequestTimeout(RegistryError):
    """The request's headers, or the next bytes of its body, did not arrive
    within ``http.timeouts`` (408)."""

    code, status, message = "UNSUPPORTED", 408, "the request was not received in time"


class URITooLong(RegistryError):
    """A request line longer than the server accepts (414)."""

    code, status, message = "UNSUPPORTED", 414, "request line too long"


class HeadersTooLarge(RegistryError):
    """Too many request headers, or too many bytes of them (431)."""

    code, status, message = "UNSUPPORTED", 431, "request headers too large"


def error_body(errors: list[RegistryError]) -> dict:
    """The spec's error document for one or more errors."""
    return {"errors": [e.to_dict() for e in errors]}
