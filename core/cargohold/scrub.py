"""Removing credentials from what a reporter sends out of the process.

The core already hands reporters a request's headers without
``Authorization``, ``Proxy-Authorization``, ``Cookie`` and
``X-Registry-Auth`` (:func:`cargohold.request_context.request_info`).  An
error service's payload may still pick up credentials elsewhere: a custom
header such as ``X-Auth-Token``, a query parameter, a value some library put
under a key named ``password``.  Reporting plugins pass what they are about
to send through these functions, last thing before it is queued, so that
every reporter drops the same names.

A name is credential-like when, lower-cased, it contains one of
:data:`CREDENTIAL_FRAGMENTS` (``X-Auth-Token``, ``db_password``,
``client_secret``...) or is one of the query parameters the core's logs
redact (:data:`cargohold.request_context.CREDENTIAL_PARAMS`: ``key``,
``sig``...).
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import unquote_plus

from cargohold.request_context import CREDENTIAL_PARAMS

__all__ = ["CREDENTIAL_FRAGMENTS", "FILTERED", "is_credential_name", "scrub_headers", "scrub_query",
           "scrub_values"]

#: Parts of a name (lower case) that mark its value as a credential.  Also
#: usable as substring filters by SDKs that take such a list.
CREDENTIAL_FRAGMENTS = ("authori", "cookie", "passw", "secret", "token", "apikey", "api_key", "api-key",
                        "credential", "session", "signature", "private")

#: What replaces a value that is not sent.
FILTERED = "[Filtered]"


def is_credential_name(name: Any) -> bool:
    """Whether a header, parameter or key named ``name`` holds a credential."""
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        return False
    lower = name.lower()
    return lower in CREDENTIAL_PARAMS or any(fragment in lower for fragment in CREDENTIAL_FRAGMENTS)


def scrub_headers(headers: Mapping[str, Any] | None) -> dict:
    """``headers`` without those whose name is credential-like."""
    return {k: v for k, v in (headers or {}).items() if not is_credential_name(k)}


def scrub_query(query: str) -> str:
    """A query string without its credential-like parameters (dropped, not
    masked); the others are kept as they were written."""
    if not query:
        return query
    return "&".join(part for part in query.split("&")
                    if not is_credential_name(unquote_plus(part.partition("=")[0])))


def scrub_values(value: Any) -> Any:
    """A copy of ``value`` where every mapping entry with a credential-like
    key has its value replaced by :data:`FILTERED`, at any depth of nested
    mappings, lists and tuples."""
    if isinstance(value, Mapping):
        return {k: (FILTERED if is_credential_name(k) else scrub_values(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub_values(v) for v in value]
    return value
