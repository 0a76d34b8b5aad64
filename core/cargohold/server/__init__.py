"""Serving the WSGI app on gevent: sockets, worker processes, signals,
slow clients and draining.

Call :func:`serve` only after ``gevent.monkey.patch_all()`` has run, before
anything else was imported (``cargohold serve`` does this first thing).

What the server does, and why:

* Its own HTTP/1.x connection loop (:mod:`cargohold.server.wsgi`) on
  gevent's public API: an accept greenlet and one greenlet per connection.
  The request line and headers are parsed by hand into the WSGI environ,
  and the status line and headers go out in one ``send`` together with the
  first body chunk when that chunk is small.  It was measured against
  gunicorn's gevent worker and kept (see the README, "Server layer").
* ``TCP_NODELAY`` on every accepted socket.  A response can go out in more
  than one write (headers, then the rest of a streamed body); on keep-alive
  connections Nagle's algorithm and delayed ACKs would then hold it ~40 ms.
* Keep-alive (HTTP/1.1) and ``SO_KEEPALIVE`` on, listen backlog 1024.
* Slow and hostile clients: ``http.timeouts`` bounds the request headers,
  stalls inside a body, idle keep-alive connections and the TLS handshake;
  ``http.maxconnections`` bounds open connections per worker (the oldest
  idle ones make room); the soft open-files limit is raised to the hard one
  at start-up, as Go's runtime does, and the bound is kept below it.
* ``http.workers`` > 1: the parent binds the socket once, forks the workers
  (each builds its own app after the fork, so nothing is shared by accident)
  and supervises them: a worker that dies is replaced; SIGTERM/SIGINT is
  passed on as SIGTERM and the parent exits once the workers have.
* SIGHUP reloads the configuration (see :mod:`cargohold.server.supervisor`):
  re-read, checked, passed on to every worker, applied live by the app.
* SIGTERM drains: stop accepting, close idle keep-alive connections, let
  requests in flight finish within ``http.draintimeout`` (a second signal
  cuts that short), call the app's ``cargohold_shutdown()`` if it has one,
  exit 0.
* Bodies stream both ways: ``wsgi.input`` is read as the app reads it and the
  app's iterable is written chunk by chunk, as given.
* The access log goes through :mod:`logging` (``cargohold.access``, INFO)
  unless ``log.accesslog.disabled``.
* Everything the server answers on its own (400, 408, 414, 431, 500, 503)
  carries the distribution spec's JSON error body.
"""

from cargohold.server.logs import configure_logging
from cargohold.server.sockets import BACKLOG, bind_listener, raise_open_files_limit
from cargohold.server.supervisor import EXIT_CONFIG, EXIT_STARTUP, serve, worker_count
from cargohold.server.tls import ssl_context
from cargohold.server.wsgi import RegistryServer, Timeouts

__all__ = [
    "BACKLOG", "EXIT_CONFIG", "EXIT_STARTUP", "RegistryServer", "Timeouts",
    "bind_listener", "configure_logging", "raise_open_files_limit", "serve", "ssl_context", "worker_count",
]
