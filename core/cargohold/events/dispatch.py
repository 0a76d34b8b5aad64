"""Delivering events: per endpoint, filter → durable queue → delivery loop.

:func:`build_notifier` reads ``notifications`` and returns a
:class:`Notifier`, which the app registers as a plugin: its
``cargohold_registry_event`` only filters and enqueues (one append to a
file, no network, no fsync), and under ``cargohold serve`` its startup
hook starts, per endpoint, a :class:`Delivery` loop and one flusher that
fsyncs what was queued.

Delivery is at least once and in order per endpoint: the oldest batch is
sent until the sink accepts it (or it is dead-lettered after
``maxattempts``); only then is it removed and the next one sent.  A batch
whose send succeeded but whose removal a crash prevented is sent again
after the restart.  With several worker processes, each one enqueues and
the one holding the queue's ``deliver.lock`` delivers; if it dies, another
takes over within :data:`LOCK_RETRY` seconds.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from typing import Any, Callable

from cargohold import hookimpl
from cargohold.blocking import offload
from cargohold.config import ConfigError, storage_driver
from cargohold.events.endpoints import Endpoint, make_sink, parse_endpoints
from cargohold.events.model import Event
from cargohold.events.queue import Batch, DurableQueue
from cargohold.plugins import collect_named
from cargohold.storage.driver import StorageDriver

log = logging.getLogger("cargohold.notifications")

#: Idle poll for batches queued by other processes (this one's wake at once).
POLL_INTERVAL = 0.25
#: How often a process that is not delivering tries to take over.
LOCK_RETRY = 1.0
#: How often queued batches are fsynced (the window a power loss may lose).
SYNC_INTERVAL = 0.2

#: The subdirectory of the storage driver's local directory used when
#: ``notifications.queuedir`` is not set ("~" never occurs in storage keys).
DEFAULT_QUEUE_SUBDIR = "~notifications"


class Delivery:
    """Delivers one endpoint's queue in order, one batch per attempt.

    ``metrics`` is anything with ``notification_queue_depth(endpoint,
    depth)`` and ``notification_failure(endpoint)`` (the app's metrics), or
    ``None``.  The depth reported is the number of batches read and waiting
    (the queue reads at most :data:`cargohold.events.queue.READ_BYTES` of
    each segment at a time, so a long backlog shows as that much).
    """

    def __init__(self, endpoint: Endpoint, sink: Any, queue: DurableQueue, metrics: Any = None):
        self.endpoint, self.sink, self.queue, self.metrics = endpoint, sink, queue, metrics
        self.failures = 0  # consecutive failed attempts, whatever the batch
        self.attempts = 0  # failed attempts at the current oldest batch, across restarts
        self._head: Batch | None = None  # the batch self.attempts counts
        self._batches: collections.deque[Batch] = collections.deque()

    def step(self) -> float | None:
        """One attempt at the oldest queued batch.  Returns how long to wait
        before the next step: ``0`` after a success, the backoff after a
        failure, ``None`` when the queue is empty."""
        if not self._batches:
            # In a thread under gevent: parsing a long backlog takes milliseconds.
            self._batches.extend(offload(self.queue.pending))
            self._report_depth()
            if not self._batches:
                return None
        batch = self._batches[0]
        if batch is not self._head:  # a new oldest batch: resume its count
            self._head = batch
            self.attempts = self.queue.failed_attempts(batch) if self.endpoint.maxattempts else 0
        if batch.events:  # (an unreadable record, set aside, has none)
            try:
                self.sink.send(batch.events)
            except Exception as e:
                return self._failed(batch, e)
        self.queue.ack(batch)
        self._next()
        if self.failures >= self.endpoint.threshold:
            log.warning("notification endpoint %r delivers again after %d failed attempts",
                        self.endpoint.name, self.failures)
        self.failures = 0
        return 0.0

    def _failed(self, batch: Batch, error: Exception) -> float:
        self.failures += 1
        self.attempts += 1
        reason = f"{type(error).__name__}: {error}"
        if self.metrics is not None:
            self.metrics.notification_failure(self.endpoint.name)
        delay = self.endpoint.delay(self.failures)
        if self.failures == self.endpoint.threshold:
            log.warning("notification endpoint %r failed %d times in a row (%s); backing off up to %.0fs",
                        self.endpoint.name, self.failures, reason, self.endpoint.maxbackoff)
        else:
            log.info("notification endpoint %r: attempt failed (%s); retrying in %.1fs",
                     self.endpoint.name, reason, delay)
        if self.endpoint.maxattempts:
            self.queue.record_failed_attempts(batch, self.attempts)
        if self.endpoint.maxattempts and self.attempts >= self.endpoint.maxattempts:
            path = offload(self.queue.dead_letter, batch, self.attempts, reason)  # it fsyncs
            log.error("notification endpoint %r: gave up on %d event(s) after %d attempts (%s); kept in %s",
                      self.endpoint.name, len(batch.events), self.attempts, reason, path)
            self._next()
        return delay

    def _next(self) -> None:
        self._batches.popleft()
        self.attempts = 0
        self._report_depth()

    def _report_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.notification_queue_depth(self.endpoint.name, len(self._batches))

    def run(self, stopping: threading.Event, wake: threading.Event) -> None:
        """Deliver until ``stopping`` is set; ``wake`` is set when this
        process queues a batch."""
        try:
            while not stopping.is_set():
                if not self.queue.lock():
                    stopping.wait(LOCK_RETRY)
                    continue
                try:
                    wait = self.step()
                except Exception:  # the queue's disk, not the endpoint
                    log.exception("notification endpoint %r: reading the queue failed", self.endpoint.name)
                    wait = LOCK_RETRY
                if wait is None:
                    wake.wait(POLL_INTERVAL)
                    wake.clear()
                elif wait:
                    stopping.wait(wait)
        finally:
            self.queue.unlock()


class Notifier:
    """The core's ``cargohold_registry_event`` listener: filters each event
    per endpoint and queues it durably; :meth:`start` runs the deliveries."""

    def __init__(self, deliveries: list[Delivery]):
        self.deliveries = deliveries
        self._wake = {id(d): threading.Event() for d in deliveries}
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        # Bound methods looked up once: this runs on every push, pull and delete.
        self._routes = [(d.endpoint.accepts if d.endpoint.filters else None, d.queue.put, self._wake[id(d)].set)
                        for d in deliveries]

    @hookimpl
    def cargohold_registry_event(self, event: Event) -> None:
        for accepts, put, wake in self._routes:
            if accepts is None or accepts(event):
                put((event,))
                wake()

    @hookimpl
    def cargohold_startup(self, app) -> None:
        metrics = getattr(app.extensions["cargohold"], "metrics", None)
        for delivery in self.deliveries:
            delivery.metrics = metrics
        try:
            from gevent import monkey
        except ImportError:  # pragma: no cover - gevent is a dependency
            return
        if monkey.is_module_patched("socket"):  # under `cargohold serve`
            self.start()

    @hookimpl
    def cargohold_shutdown(self, app) -> None:
        self.stop()

    def start(self) -> None:
        """Start one delivery loop per endpoint and the flusher (threads;
        greenlets under ``cargohold serve``)."""
        if self._threads:
            return
        for delivery in self.deliveries:
            delivery.queue.remove_stale_tmp()
            self._spawn(delivery.run, self._stopping, self._wake[id(delivery)],
                        name=f"notify-{delivery.endpoint.name}")
        self._spawn(self._flush_loop, name="notify-flush")

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loops (a send in progress is abandoned and its batch stays
        queued), fsync what was queued and close the queues."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        for delivery in self.deliveries:
            try:
                delivery.queue.close()
            except OSError:
                log.exception("notification queue %s: closing failed", delivery.queue.directory)

    def sync(self) -> None:
        for delivery in self.deliveries:
            try:
                offload(delivery.queue.sync)
            except OSError:
                log.exception("notification queue %s: fsync failed", delivery.queue.directory)

    def _flush_loop(self) -> None:
        while not self._stopping.wait(SYNC_INTERVAL):
            self.sync()

    def _spawn(self, target: Callable, *args, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def queue_dir(cfg: dict, driver: StorageDriver) -> str:
    """``notifications.queuedir``, else ``~notifications`` in the storage
    driver's :meth:`~cargohold.storage.driver.StorageDriver.local_directory`.
    Raises :class:`ConfigError` when neither exists."""
    configured = cfg["notifications"].get("queuedir")
    if configured:
        return configured
    root = driver.local_directory()
    if not root:
        raise ConfigError(f"notifications.queuedir: required with storage.{storage_driver(cfg)} (the durable "
                          "event queue needs a local directory)")
    return os.path.join(root, DEFAULT_QUEUE_SUBDIR)


def build_notifier(pm, cfg: dict, driver: StorageDriver) -> Notifier | None:
    """The notifier for ``notifications.endpoints``, or ``None`` when no
    endpoint is configured.  Raises :class:`ConfigError` naming the bad key
    of an entry, an unknown sink type or a missing queue directory."""
    entries = cfg["notifications"]["endpoints"]
    if not entries:
        return None
    factories = collect_named(pm, "cargohold_notification_sinks")
    endpoints = parse_endpoints(entries, factories)
    sinks = [make_sink(endpoint, i, factories[endpoint.type]) for i, endpoint in enumerate(endpoints)]
    base = queue_dir(cfg, driver)
    deliveries = []
    for endpoint, sink in zip(endpoints, sinks):
        if endpoint.disabled:
            log.info("notification endpoint %r is disabled: its events are not queued", endpoint.name)
            continue
        try:
            queue = DurableQueue(os.path.join(base, endpoint.name))
        except OSError as e:
            raise ConfigError(f"notifications.queuedir: cannot create {os.path.join(base, endpoint.name)}: "
                              f"{e.strerror}") from e
        deliveries.append(Delivery(endpoint, sink, queue))
    return Notifier(deliveries)
