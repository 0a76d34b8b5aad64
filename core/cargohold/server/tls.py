"""The server's TLS context from ``http.tls``, reloaded when its files
change."""

from __future__ import annotations

import logging
import ssl
import time
from typing import Any, Callable, Mapping

from cargohold.config import ConfigError
from cargohold.filestamp import file_stamp

log = logging.getLogger("cargohold.server")

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


class ReloadingContext:
    """The TLS context for ``http.tls``, rebuilt when the certificate, key
    or client CA files change, so that renewed certificates are served
    without a restart.

    Passed to the server in place of an :class:`ssl.SSLContext`: it offers
    ``wrap_socket``, which first checks (at most every ``interval``
    seconds, one ``stat`` per file) whether a file changed.  New
    connections then use the new context; open ones keep theirs.  When the
    new files do not load (half-written, mismatched pair), the previous
    context stays in use, the problem is logged, and the next check tries
    again.  The first load happens at construction and raises
    :class:`ConfigError` as :func:`ssl_context` does.
    """

    def __init__(self, tls: Mapping[str, Any], interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic):
        self.tls = dict(tls)
        self.interval = interval
        self._clock = clock
        self.paths = [tls["certificate"], tls["key"], *(tls.get("clientcas") or [])]
        self._stamps = self._stat()
        self.context = ssl_context(tls)
        self._checked = clock()

    def _stat(self) -> list:
        return [file_stamp(path) for path in self.paths]

    def refresh(self) -> bool:
        """Reload if a file changed since the last load; returns whether a
        new context is in use."""
        self._checked = self._clock()
        stamps = self._stat()
        if stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            self.context = ssl_context(self.tls)
        except ConfigError as e:
            log.error("TLS files changed but do not load; still serving the previous certificate: %s",
                      str(e).removeprefix("config: "))
            return False
        log.info("TLS certificate reloaded from %s", self.tls["certificate"])
        return True

    def wrap_socket(self, sock, **kwargs):
        if self._clock() - self._checked >= self.interval:
            self.refresh()
        return self.context.wrap_socket(sock, **kwargs)


def reloading_context(tls: Mapping[str, Any]) -> ReloadingContext | None:
    """A :class:`ReloadingContext` for ``http.tls``, or ``None`` without a
    certificate.  Raises :class:`ConfigError` like :func:`ssl_context`."""
    if not tls.get("certificate"):
        return None
    return ReloadingContext(tls)
