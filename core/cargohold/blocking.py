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


class Started:
    """A call started by :func:`start`; :meth:`wait` returns its result or
    raises its exception."""

    __slots__ = ("_greenlet", "_ok", "_value")

    def __init__(self, fn: Callable[..., T], args: tuple):
        self._greenlet = None
        if _gevent_active():
            import gevent

            self._greenlet = gevent.spawn(_outcome, fn, args)
        else:
            self._ok, self._value = _outcome(fn, args)

    def wait(self):
        if self._greenlet is not None:
            self._ok, self._value = self._greenlet.get()
            self._greenlet = None
        if self._ok:
            return self._value
        raise self._value

    def wait_quietly(self) -> None:
        """Wait for the end, dropping any exception (on an error path that
        is already raising its own)."""
        try:
            self.wait()
        except BaseException:
            pass


def start(fn: Callable[..., T], *args) -> Started:
    """Begin ``fn(*args)`` alongside the caller: in its own greenlet when
    serving, so that its waits on the disk (an ``fsync`` in :func:`offload`)
    overlap the caller's; outside a gevent server it runs right away.  Call
    :meth:`Started.wait` for the outcome before relying on it."""
    return Started(fn, args)


def concurrently(*calls: Callable[[], object]) -> None:
    """Run the zero-argument ``calls`` together (see :func:`start`; the
    last one in the caller) and return once all have ended; the first
    exception, in call order, is then raised.  For writes that do not
    depend on each other, such as two files each made durable with their
    own ``fsync``: the disk waits overlap and the file system commits them
    in one journal transaction.  Outside a gevent server they run in order."""
    started = [start(call) for call in calls[:-1]]
    started.append(_Now(calls[-1]))
    errors = []
    for each in started:
        try:
            each.wait()
        except BaseException as e:  # the others still finish before raising
            errors.append(e)
    if errors:
        try:
            raise errors[0]
        finally:
            errors = []


class _Now(Started):
    """A call run right away in the caller (the last of :func:`concurrently`)."""

    __slots__ = ()

    def __init__(self, fn: Callable[[], object]):
        self._greenlet = None
        self._ok, self._value = _outcome(fn, ())
