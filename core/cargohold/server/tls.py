"""The server's TLS context from ``http.tls``."""

from __future__ import annotations

import ssl
from typing import Any, Mapping

from cargohold.config import ConfigError

_TLS_VERSIONS = {
    "tls1.0": ssl.TLSVersion.TLSv1,
    "tls1.1": ssl.TLSVersion.TLSv1_1,
    "tls1.2": ssl.TLSVersion.TLSv1_2,
    "tls1.3": ssl.TLSVersion.TLSv1_3,
}


def ssl_context(tls: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The server's TLS context from ``http.tls``, or ``None`` without a
    certificate.  Raises :class:`ConfigError` naming the key whose file
    cannot be loaded."""
    if not tls.get("certificate"):
        return None
    from gevent import ssl as gssl  # its sockets cooperate with the hub

    ctx = gssl.SSLContext(gssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _TLS_VERSIONS[tls.get("minimumtls") or "tls1.2"]
    try:
        ctx.load_cert_chain(tls["certificate"], tls["key"])
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"http.tls.certificate: cannot load {tls['certificate']} "
                          f"with key {tls['key']}: {e}") from None
    for ca in tls.get("clientcas") or []:
        try:
            ctx.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(f"http.tls.clientcas: cannot load {ca}: {e}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
