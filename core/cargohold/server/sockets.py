"""The listening socket, and the open-files limit."""

from __future__ import annotations

import logging
import resource
import socket

from gevent import monkey

from cargohold.config import ConfigError


BACKLOG = 1024

log = logging.getLogger("cargohold.server")


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit (``RLIMIT_NOFILE``) to the hard
    limit, as Go's runtime does at start-up: each connection is a file
    descriptor, and the common default of 1,024 is soon used up.  Returns
    the soft limit now in force (unchanged if it cannot be raised)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == soft:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, e)
        return soft
    log.debug("open-files limit raised from %d to %d", soft, hard)
    return hard


def bind_listener(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on ``host:port``.  An empty host listens on all
    interfaces (IPv6 and IPv4 where possible).  Raises :class:`ConfigError`
    naming ``http.addr`` if the address cannot be bound."""
    from gevent import socket as gsocket

    # The original resolver: gevent's would start a thread pool in the
    # parent before it forks.
    getaddrinfo = monkey.get_original("socket", "getaddrinfo")
    if host == "":
        candidates = [(socket.AF_INET6, ("::", port)), (socket.AF_INET, ("0.0.0.0", port))]
    else:
        try:
            infos = getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ConfigError(f"http.addr: cannot resolve {host!r}: {e.strerror}") from None
        candidates = [(family, addr) for family, _, _, _, addr in infos]
    error: OSError | None = None
    for family, addr in candidates:
        sock = gsocket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and host == "":
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(addr)
            sock.listen(backlog)
            return sock
        except OSError as e:
            sock.close()
            error = error or e
            if host == "" and family == socket.AF_INET6:
                error = None  # no IPv6 here: fall back to IPv4
    shown = f"[{host}]" if ":" in host else host
    raise ConfigError(f"http.addr: cannot listen on {shown}:{port}: {getattr(error, 'strerror', None) or error}")
