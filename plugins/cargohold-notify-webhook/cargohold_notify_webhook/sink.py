"""One delivery attempt: an HTTP POST of ``{"events": [...]}``."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
import urllib.parse
from typing import Any

from cargohold.config import Duration, OneOf, Secret, check_section
from cargohold.events import ENVELOPE_MEDIA_TYPES, Event, envelope

#: The default name of the signature header; its value is
#: ``sha256=<hex HMAC-SHA256 of the request body with signing.secret>``.
SIGNATURE_HEADER = "X-Cargohold-Signature"

SCHEMA: dict[str, Any] = {
    "name": str,
    "url": str,
    "headers": {"*": list},
    "timeout": Duration,
    "envelope": OneOf("v1", "v2"),
    "signing": {"secret": Secret, "header": str},
    "tls": {"cafile": str, "insecureskipverify": bool},
}

DEFAULT_TIMEOUT = 5.0


class DeliveryFailed(Exception):
    """The endpoint answered, but not with a 2xx status."""


class WebhookSink:
    """POSTs each batch to ``url``.

    The body is the envelope as UTF-8 JSON, ``Content-Type`` the envelope's
    media type (``v2``: ``application/vnd.docker.distribution.events.v2+json``;
    ``v1``: the 2.x ``...events.v1+json``), plus the configured ``headers``.
    With ``signing.secret``, the ``signing.header`` header (default
    :data:`SIGNATURE_HEADER`) carries ``sha256=`` and the hex HMAC-SHA256 of
    the exact body bytes.  A 2xx answer is success; any other status, a
    timeout or a connection error raises.  Redirects are not followed.
    """

    def __init__(self, name: str, url: str, headers: dict[str, list[str]] | None = None,
                 timeout: float = DEFAULT_TIMEOUT, envelope_version: str = "v2",
                 secret: str = "", signature_header: str = SIGNATURE_HEADER,
                 ssl_context: ssl.SSLContext | None = None):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url: expected an http:// or https:// URL, got {url!r}")
        self.name, self.url, self.timeout = name, url, timeout
        self._parts = parts
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.media_type = ENVELOPE_MEDIA_TYPES[envelope_version]
        self.headers = [(k, v) for k, values in (headers or {}).items() for v in values]
        self.secret = secret.encode()
        self.signature_header = signature_header
        self._ssl_context = ssl_context

    #: The endpoint keys :meth:`from_config` reads (listed in the
    #: configuration reference under ``notifications.endpoints[]``).
    schema = SCHEMA

    @classmethod
    def from_config(cls, params: dict) -> "WebhookSink":
        """Build from an endpoint's keys (see the plugin's README).  Raises
        ``ConfigError``/``ValueError`` naming a bad or unknown key."""
        values = check_section(params, SCHEMA)
        if not values.get("url"):
            raise ValueError("url: required (where to POST the events)")
        headers = {k: [str(v) for v in vs] for k, vs in (values.get("headers") or {}).items()}
        signing = values.get("signing") or {}
        tls = values.get("tls") or {}
        context = None
        if values["url"].lower().startswith("https:"):
            try:
                context = ssl.create_default_context(cafile=tls.get("cafile") or None)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"tls.cafile: cannot load {tls.get('cafile')!r}: {e}") from e
            if tls.get("insecureskipverify"):
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        timeout = values.get("timeout")
        return cls(
            name=values.get("name", ""), url=values["url"], headers=headers,
            timeout=DEFAULT_TIMEOUT if not timeout else timeout,
            envelope_version=values.get("envelope") or "v2",
            secret=signing.get("secret") or "", signature_header=signing.get("header") or SIGNATURE_HEADER,
            ssl_context=context,
        )

    def signature(self, body: bytes) -> str:
        """The signature header's value for ``body``."""
        return "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def send(self, batch: list[Event]) -> None:
        """One attempt to deliver ``batch``; raises unless the answer is 2xx."""
        body = envelope(batch)
        parts = self._parts
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=self.timeout, context=self._ssl_context)
        else:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        try:
            conn.putrequest("POST", self._path)
            conn.putheader("Content-Type", self.media_type)
            conn.putheader("Content-Length", str(len(body)))
            for key, value in self.headers:
                conn.putheader(key, value)
            if self.secret:
                conn.putheader(self.signature_header, self.signature(body))
            conn.endheaders(body)
            resp = conn.getresponse()
            resp.read(64 * 1024)  # a little of the body, for the connection's sake
            if not 200 <= resp.status < 300:
                raise DeliveryFailed(f"{self.url} answered {resp.status} {resp.reason}")
        finally:
            conn.close()
