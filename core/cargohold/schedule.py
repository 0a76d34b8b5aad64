"""Periodic tasks inside ``cargohold serve``: upload purging, scheduled
garbage collection, and plugins' own (retention, say), each started from a
``cargohold_startup`` implementation::

    from cargohold import schedule

    @hookimpl
    def cargohold_startup(app):
        spawn_later = schedule.server_spawn_later()
        if spawn_later is not None:
            schedule.every(3600, lambda: my_task(app), spawn_later)

Every worker process schedules its own runs; a task that must run once at a
time across workers and hosts takes a lease (:class:`cargohold.gc.lease.Lease`
with a task name of its own).  Work that blocks (storage calls, CPU) belongs
in :func:`cargohold.blocking.offload` so the worker keeps serving.
"""

from __future__ import annotations

import logging
import random
from typing import Callable

log = logging.getLogger(__name__)

__all__ = ["every", "server_spawn_later"]


def server_spawn_later() -> Callable | None:
    """gevent's ``spawn_later(seconds, fn)`` when the app runs under
    ``cargohold serve`` (gevent has patched the standard library); ``None``
    otherwise (Flask's test client, a maintenance command): there is no loop
    to schedule on."""
    try:
        from gevent import monkey, spawn_later
    except ImportError:  # pragma: no cover - gevent is a dependency
        return None
    if not monkey.is_module_patched("socket"):
        return None
    return spawn_later


def every(interval: float, task: Callable[[], object], spawn_later: Callable,
          first: float | None = None) -> None:
    """Run ``task()`` every ``interval`` seconds with ``spawn_later``: the
    first run after ``first`` seconds (default: ``interval`` plus a random
    part of up to a tenth of it, at most a minute, so that workers started
    together do not run at the same moment), each next one ``interval``
    after the previous one ended.  An exception from ``task`` is logged and
    the schedule goes on."""

    def run() -> None:
        try:
            task()
        except Exception:
            log.exception("scheduled task %s failed", getattr(task, "__name__", task))
        finally:
            spawn_later(interval, run)

    if first is None:
        first = interval + random.uniform(0, min(60.0, interval / 10))
    spawn_later(first, run)
