"""Running blocking system calls without stalling the server.

Under ``cargohold serve`` every request is a greenlet on one event loop per
worker.  A call that blocks in the kernel (``fsync`` of a large file, a
``write`` throttled by dirty-page writeback) would stall every other request
of that worker for its whole duration: seconds, at the end of a 1 GiB push.
:func:`offload` runs such calls in gevent's thread pool instead; outside a
gevent server (tests, CLI commands) it just calls the function.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def _gevent_active() -> bool:
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return monkey.is_module_patched("socket")


def offload(fn: Callable[..., T], *args) -> T:
    """``fn(*args)``, in gevent's thread pool when serving.  Exceptions
    propagate as if called directly.  Worth it only for calls that may block
    for milliseconds; the hand-off costs tens of microseconds."""
    if not _gevent_active():
        return fn(*args)
    import gevent

    # The error comes back as a value: raised inside the pool, gevent would
    # also print it as an unhandled traceback, and most are expected (a
    # missing path, a create that lost its race).
    ok, value = gevent.get_hub().threadpool.apply(_outcome, (fn, args))
    if ok:
        return value
    try:
        raise value
    finally:
        del value


def _outcome(fn: Callable[..., T], args: tuple) -> tuple[bool, object]:
    try:
        return True, fn(*args)
    except BaseException as e:  # re-raised by offload() in the caller
        return False, e


def native_lock():
    """A lock of the OS thread, even under gevent's monkey-patching (which
    turns ``threading.Lock`` into a greenlet lock).  For state shared with
    calls run by :func:`offload`: hold it only for a few field updates, never
    across anything that blocks, since waiting for it stalls the event loop."""
    from gevent import monkey

    return monkey.get_original("_thread", "allocate_lock")()
