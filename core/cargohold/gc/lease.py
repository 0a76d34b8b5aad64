"""One garbage collector (or one run of another maintenance task) at a time
across every process and host sharing a store, through a lease kept in the
store itself.

Leases are numbered files ``/cargohold/<task>/lease/<epoch>`` (``gc`` for the
collector; each task has its own, so a retention run does not wait for a
collection).  To take the lease
a collector reads the highest epoch: if that lease was renewed less than its
``ttl`` ago (by the store's clock) another collector holds it; otherwise it
creates ``<epoch + 1>`` with the driver's conditional create, which exactly
one contender wins.  The holder rewrites its file every ``ttl / 4``, and
gives up as soon as a higher epoch appears or it could not renew for
``ttl * 3 / 4`` (:meth:`Lease.valid`), so a crashed collector blocks the next
one for at most ``ttl``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid

from cargohold.storage import paths
from cargohold.storage.driver import FileExists, PathNotFound, StorageDriver, Unsupported

log = logging.getLogger("cargohold.gc")

#: Seconds a lease lasts without renewal.
DEFAULT_TTL = 60.0


class LeaseError(Exception):
    """The lease cannot be taken or was lost; ``str()`` says why."""


def store_now(driver: StorageDriver) -> float:
    """The store's clock now: the modtime of a probe file written for it."""
    probe = paths.gc_clock(uuid.uuid4().hex)
    driver.put_content(probe, b"")
    try:
        return driver.stat(probe).modtime
    finally:
        try:
            driver.delete(probe)
        except PathNotFound:
            pass


class Lease:
    """The lease of one maintenance ``task`` (default the garbage collector's);
    :meth:`acquire`, then :meth:`release`.  ``activity`` names the task in
    errors and logs."""

    def __init__(self, driver: StorageDriver, ttl: float = DEFAULT_TTL, task: str = "gc",
                 activity: str = "garbage collection"):
        self.driver = driver
        self.ttl = ttl
        self.task = task
        self.activity = activity
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.epoch = 0
        #: The store's clock when the lease was taken.
        self.started = 0.0
        self._renewed = 0.0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _latest(self) -> tuple[int, str | None]:
        try:
            entries = self.driver.list(paths.leases(self.task))
        except PathNotFound:
            return 0, None
        if not entries:
            return 0, None
        return int(entries[-1].rpartition("/")[2]), entries[-1]

    def _content(self) -> bytes:
        return json.dumps({"holder": self.holder, "ttl": self.ttl}).encode()

    def acquire(self) -> None:
        """Take the lease or raise :class:`LeaseError` naming its holder."""
        epoch, latest = self._latest()
        if latest is not None:
            try:
                info = self.driver.stat(latest)
                held = json.loads(self.driver.get_content(latest))
            except PathNotFound:
                held, info = None, None  # released meanwhile
            except ValueError:
                held, info = {"holder": "?", "ttl": self.ttl}, self.driver.stat(latest)
            if held is not None:
                age = store_now(self.driver) - info.modtime
                if age < float(held.get("ttl", self.ttl)):
                    raise LeaseError(f"another {self.activity} is running ({held.get('holder')}, "
                                     f"lease renewed {max(age, 0):.0f}s ago)")
        self.epoch = epoch + 1
        path = paths.lease(self.task, self.epoch)
        try:
            self.driver.create(path, self._content())
        except FileExists:
            raise LeaseError(f"another {self.activity} took the lease at the same moment") from None
        except Unsupported:
            raise LeaseError(f"the {self.driver.name} storage driver cannot create files conditionally, "
                             f"which the lease of {self.activity} needs") from None
        self._renewed = time.monotonic()
        self.started = self.driver.stat(path).modtime
        for epoch_path in self._older(path):
            try:
                self.driver.delete(epoch_path)
            except PathNotFound:
                pass
        self._thread = threading.Thread(target=self._renew_loop, name=f"{self.task}-lease", daemon=True)
        self._thread.start()

    def _older(self, mine: str) -> list[str]:
        try:
            return [p for p in self.driver.list(paths.leases(self.task)) if p < mine]
        except PathNotFound:
            return []

    def renew(self) -> None:
        """Rewrite the lease (refreshing its modtime) unless a newer epoch
        exists, in which case the lease is lost."""
        epoch, _ = self._latest()
        if epoch > self.epoch:
            self._lost = f"lease taken over by epoch {epoch}"
            return
        self.driver.put_content(paths.lease(self.task, self.epoch), self._content())
        self._renewed = time.monotonic()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self.renew()
            except Exception as e:  # the store is down: valid() runs out
                log.warning("%s: could not renew the lease: %s", self.activity, e)
            if self._lost:
                return

    def valid(self) -> bool:
        """Whether the lease is surely still ours (renewed recently enough
        that nobody can have taken it over)."""
        return self._lost is None and time.monotonic() - self._renewed < self.ttl * 3 / 4

    def check(self) -> None:
        """Raise :class:`LeaseError` unless :meth:`valid`."""
        if not self.valid():
            raise LeaseError(f"{self.activity} stopped: {self._lost or 'the lease could not be renewed in time'}")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._lost is None and self.epoch:
            try:
                self.driver.delete(paths.lease(self.task, self.epoch))
            except PathNotFound:
                pass
