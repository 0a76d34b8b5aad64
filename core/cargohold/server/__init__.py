"""Serving the WSGI app with gevent's pywsgi: sockets, worker processes,
signals and draining.

Call :func:`serve` only after ``gevent.monkey.patch_all()`` has run, before
anything else was imported (``cargohold serve`` does this first thing).

What the server does, and why:

* ``TCP_NODELAY`` on every accepted socket.  A response can go out in more
  than one write (headers, then the rest of a streamed body); on keep-alive
  connections Nagle's algorithm and delayed ACKs would then hold it ~40 ms.
* A lean HTTP/1.x front end on top of pywsgi's handler: the request line and
  headers are parsed by hand (pywsgi goes through ``http.client`` and the
  ``email`` package, its biggest per-request cost), the WSGI environ is
  built directly from them, and the status line and headers go out in one
  ``send`` together with the first body chunk when that chunk is small.
  Request bodies are still read by pywsgi's ``Input`` (Content-Length,
  chunked, ``Expect: 100-continue``).
* Keep-alive (HTTP/1.1) and ``SO_KEEPALIVE`` on, listen backlog 1024.
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
"""

from cargohold.server.logs import configure_logging
from cargohold.server.sockets import BACKLOG, bind_listener
from cargohold.server.supervisor import EXIT_CONFIG, EXIT_STARTUP, serve, worker_count
from cargohold.server.tls import ssl_context
from cargohold.server.wsgi import RegistryServer

__all__ = [
    "BACKLOG", "EXIT_CONFIG", "EXIT_STARTUP", "RegistryServer",
    "bind_listener", "configure_logging", "serve", "ssl_context", "worker_count",
]
