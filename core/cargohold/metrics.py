"""Prometheus metrics of one registry process, and how several worker
processes add up to one ``/metrics``.

What is measured (all names start with ``cargohold_``):

* ``http_requests_total{route,method,status}``: requests served.  ``route``
  is the Flask endpoint (``v2.get_blob``, ``ops.healthz``...), or
  ``unmatched`` for paths no route serves: never the raw path, so the number
  of series stays bounded.  Unusual methods count as ``OTHER``.
* ``http_request_duration_seconds{route}``: from the request reaching the
  app until its response body was sent.
* ``http_request_bytes_total{route}``, ``http_response_bytes_total{route}``:
  body bytes read from clients and sent to them.
* ``uploads_in_flight``: blob upload requests streaming a body right now.
* ``storage_operation_duration_seconds{driver,operation}``: every storage
  driver call, as timed by :class:`cargohold.storage.checked.CheckedDriver`.
* ``notification_queue_depth{endpoint}``, ``notification_failures_total{endpoint}``:
  reported by the notification delivery code.

The hot path only updates plain dicts (a few microseconds per request;
prometheus_client's own metric objects take a lock on every update).  At
scrape time the tallies become prometheus_client metric families.

Several workers (``http.workers`` > 1): the supervisor creates a directory
and names it in :data:`SHARED_DIR_ENV` before forking.  Each worker writes a
snapshot of its tallies there every :data:`FLUSH_INTERVAL` seconds and when
it stops; the worker answering a scrape adds its live tallies to every other
worker's latest snapshot.  Counters of workers that exited are kept (they
never go down); their gauges are dropped.  Other workers' numbers are
therefore up to :data:`FLUSH_INTERVAL` seconds old, and a worker killed
outright loses what it counted since its last snapshot.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from bisect import bisect_left
from time import perf_counter
from typing import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from cargohold.client_input import BODY_KEY
from cargohold.filebody import file_body_of
from cargohold.request_context import assign_request_id

log = logging.getLogger("cargohold.metrics")

#: Set by the supervisor: the directory where workers share their tallies.
SHARED_DIR_ENV = "CARGOHOLD_METRICS_DIR"
#: Seconds between a worker's snapshots.
FLUSH_INTERVAL = 1.0
#: Upper bounds of the latency histograms' buckets, in seconds.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Flask endpoints whose requests stream blob data into an upload.
UPLOAD_ENDPOINTS = frozenset({"v2.start_upload", "v2.upload_chunk", "v2.finish_upload"})
#: The route label of requests no route matched.
UNMATCHED = "unmatched"
#: Where the app leaves the matched route for the WSGI middleware.
ROUTE_KEY = "cargohold.route"
#: Set by the app while an upload request is counted in flight.
UPLOAD_KEY = "cargohold.upload"

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# name -> (help, label names); the families' names get the cargohold_ prefix.
_COUNTERS = {
    "http_requests": ("HTTP requests served, by route (Flask endpoint), method and status",
                      ("route", "method", "status")),
    "http_request_bytes": ("Request body bytes read from clients, by route", ("route",)),
    "http_response_bytes": ("Response body bytes sent to clients, by route", ("route",)),
    "notification_failures": ("Failed notification delivery attempts, by endpoint", ("endpoint",)),
    "proxy_lookups": ("Pull-through cache lookups, by upstream, kind (manifest, blob, tags, referrers) and result "
                      "(hit, miss, joined, revalidated, stale, unknown, error, upstream)",
                      ("upstream", "kind", "result")),
    "proxy_upstream_errors": ("Upstream requests of the pull-through cache that failed, by upstream",
                              ("upstream",)),
    "proxy_fetched_bytes": ("Bytes the pull-through cache fetched from upstreams, by upstream", ("upstream",)),
    "gc_runs": ("Scheduled garbage collections, by outcome (completed, skipped: another held the lease, "
                "failed)", ("outcome",)),
}
_HISTOGRAMS = {
    "http_request_duration_seconds": ("Time from a request reaching the app to its last body byte, by route",
                                      ("route",)),
    "storage_operation_duration_seconds": ("Storage driver call latency, by driver and operation",
                                           ("driver", "operation")),
}
# name -> (help, label names, how processes combine).  "sum": each process
# has its own share.  "latest": one shared thing that whichever process
# looks at it reports (the notification queue is one per endpoint, measured
# by the worker delivering it); values are [value, unix time] then.
_GAUGES = {
    "uploads_in_flight": ("Blob upload requests streaming a body right now", (), "sum"),
    "notification_queue_depth": ("Events waiting for delivery, by notification endpoint", ("endpoint",), "latest"),
    "gc_last_run_timestamp_seconds": ("When the last scheduled garbage collection ended (Unix time)", (),
                                      "latest"),
    "gc_last_run_duration_seconds": ("How long the last scheduled garbage collection took", (), "latest"),
    "gc_last_run_reclaimed_bytes": ("Bytes of blobs the last scheduled garbage collection swept", (), "latest"),
    "gc_last_run_swept_blobs": ("Blobs the last scheduled garbage collection swept", (), "latest"),
}


class RegistryMetrics:
    """The metrics of one app (``RegistryState.metrics``).

    Update methods are cheap and never raise for valid arguments; they take
    no lock: under gevent a worker runs one greenlet at a time, so updates
    cannot interleave (with real threads an increment may rarely be lost).
    :meth:`exposition` renders everything in Prometheus' text format, summed
    over the worker processes when :data:`SHARED_DIR_ENV` is set.
    """

    def __init__(self, shared_dir: str | None = None):
        self.shared_dir = shared_dir
        self.counters: dict[str, dict[tuple, float]] = {name: {} for name in _COUNTERS}
        self.histograms: dict[str, dict[tuple, list]] = {name: {} for name in _HISTOGRAMS}
        self.gauges: dict[str, dict[tuple, float]] = {name: {} for name in _GAUGES}
        self._requests = self.counters["http_requests"]
        self._bytes_in = self.counters["http_request_bytes"]
        self._bytes_out = self.counters["http_response_bytes"]
        self._latency = self.histograms["http_request_duration_seconds"]
        self._storage = self.histograms["storage_operation_duration_seconds"]
        self._uploads = self.gauges["uploads_in_flight"]
        self._flusher = None
        self._collectors: list = []

    def add_collector(self, collector) -> None:
        """Serve a plugin's metrics with the registry's: ``collector`` has the
        prometheus_client ``Collector`` protocol (``collect()`` yielding metric
        families), asked at each scrape of this process.  Its metrics are this
        process's own, not summed over the worker processes."""
        self._collectors.append(collector)

    @classmethod
    def from_environ(cls) -> "RegistryMetrics":
        """Metrics shared through :data:`SHARED_DIR_ENV` if the supervisor set it."""
        return cls(os.environ.get(SHARED_DIR_ENV) or None)

    # -- recording ----------------------------------------------------------

    def request(self, route: str, method: str, status: int, seconds: float,
                bytes_in: int = 0, bytes_out: int = 0) -> None:
        """One request finished."""
        if method not in _METHODS:
            method = "OTHER"
        key = (route, method, status)
        self._requests[key] = self._requests.get(key, 0) + 1
        _observe(self._latency, (route,), seconds)
        if bytes_in:
            self._bytes_in[(route,)] = self._bytes_in.get((route,), 0) + bytes_in
        if bytes_out:
            self._bytes_out[(route,)] = self._bytes_out.get((route,), 0) + bytes_out

    def storage_operation(self, driver: str, operation: str, seconds: float) -> None:
        """A storage driver call took ``seconds`` (failed calls count too)."""
        _observe(self._storage, (driver, operation), seconds)

    def storage_observer(self, driver: str) -> Callable[[str, float], None]:
        """``observer(operation, seconds)`` for ``driver``'s calls, as
        :meth:`cargohold.storage.checked.OperationStats.add_observer` takes it."""
        storage = self._storage

        def observe(operation: str, seconds: float) -> None:
            _observe(storage, (driver, operation), seconds)

        return observe

    def upload_started(self) -> None:
        self._uploads[()] = self._uploads.get((), 0) + 1

    def upload_finished(self) -> None:
        self._uploads[()] = self._uploads.get((), 0) - 1

    def notification_queue_depth(self, endpoint: str, depth: int) -> None:
        """``endpoint``'s queue now holds ``depth`` events."""
        self.gauges["notification_queue_depth"][(str(endpoint),)] = [depth, time.time()]

    def notification_failure(self, endpoint: str) -> None:
        """A delivery attempt to ``endpoint`` failed."""
        failures = self.counters["notification_failures"]
        key = (str(endpoint),)
        failures[key] = failures.get(key, 0) + 1

    def proxy_lookup(self, upstream: str, kind: str, result: str) -> None:
        """The pull-through cache served a ``kind`` of ``upstream`` with ``result``."""
        _add(self.counters["proxy_lookups"], (upstream, kind, result), 1)

    def proxy_upstream_error(self, upstream: str) -> None:
        _add(self.counters["proxy_upstream_errors"], (upstream,), 1)

    def proxy_fetched(self, upstream: str, n: int) -> None:
        _add(self.counters["proxy_fetched_bytes"], (upstream,), n)
    def gc_run(self, outcome: str, seconds: float = 0.0, reclaimed: int = 0, swept: int = 0) -> None:
        """A scheduled garbage collection ended with ``outcome``; a completed
        one also sets the last-run gauges."""
        runs = self.counters["gc_runs"]
        runs[(outcome,)] = runs.get((outcome,), 0) + 1
        if outcome == "completed":
            now = time.time()
            for name, value in (("timestamp_seconds", now), ("duration_seconds", seconds),
                                ("reclaimed_bytes", reclaimed), ("swept_blobs", swept)):
                self.gauges[f"gc_last_run_{name}"][()] = [value, now]

    # -- sharing between worker processes -----------------------------------

    def snapshot(self) -> dict:
        """The tallies as a JSON-able dict."""
        # list(d.items()) copies in one step, so a thread adding a series
        # meanwhile (notification delivery outside gevent) cannot break it.
        return {
            "counters": {n: [[*k, v] for k, v in list(d.items())] for n, d in self.counters.items()},
            "histograms": {n: [[*k, list(v)] for k, v in list(d.items())] for n, d in self.histograms.items()},
            "gauges": {n: [[*k, v] for k, v in list(d.items())] for n, d in self.gauges.items()},
        }

    def flush(self) -> None:
        """Write this process's snapshot into the shared directory (atomically)."""
        if self.shared_dir:
            _write_snapshot(self.shared_dir, os.getpid(), self.snapshot())

    def start_flushing(self) -> None:
        """Flush every :data:`FLUSH_INTERVAL` seconds in a greenlet, when shared."""
        if not self.shared_dir or self._flusher is not None:
            return
        import gevent

        def loop() -> None:
            while True:
                gevent.sleep(FLUSH_INTERVAL)
                try:
                    self.flush()
                except OSError as e:  # a full disk must not end the worker
                    log.warning("cannot write metrics snapshot: %s", e)

        self._flusher = gevent.spawn(loop)

    def stop_flushing(self) -> None:
        """Stop the flusher and write a last snapshot."""
        if self._flusher is not None:
            self._flusher.kill(block=False)
            self._flusher = None
        if self.shared_dir:
            try:
                self.flush()
            except OSError as e:
                log.warning("cannot write metrics snapshot: %s", e)

    # -- exposition ----------------------------------------------------------

    def collect(self) -> Iterator:
        """prometheus_client metric families (the ``Collector`` protocol)."""
        snapshots = [self.snapshot()]
        if self.shared_dir:
            snapshots += _read_snapshots(self.shared_dir, exclude_pid=os.getpid())
        merged = merge_snapshots(snapshots)
        for name, (help_text, labels) in _COUNTERS.items():
            family = CounterMetricFamily("cargohold_" + name, help_text, labels=labels)
            for key, value in sorted(merged["counters"][name].items()):
                family.add_metric([str(k) for k in key], value)
            yield family
        for name, (help_text, labels) in _HISTOGRAMS.items():
            family = HistogramMetricFamily("cargohold_" + name, help_text, labels=labels)
            for key, tally in sorted(merged["histograms"][name].items()):
                counts, total = tally[:-1], tally[-1]
                cumulative, running = [], 0
                for bound, n in zip((*map(_fmt_bound, BUCKETS), "+Inf"), counts):
                    running += n
                    cumulative.append((bound, running))
                family.add_metric([str(k) for k in key], cumulative, total)
            yield family
        for name, (help_text, labels, _) in _GAUGES.items():
            family = GaugeMetricFamily("cargohold_" + name, help_text, labels=labels)
            values = merged["gauges"][name]
            if not labels and not values:
                values = {(): 0}
            for key, value in sorted(values.items()):
                family.add_metric([str(k) for k in key], value[0] if isinstance(value, list) else value)
            yield family
        for collector in self._collectors:
            try:
                families = list(collector.collect())
            except Exception:  # a plugin's broken collector must not cost the registry's metrics
                log.exception("metrics collector %r failed", collector)
                continue
            yield from families

    def exposition(self) -> tuple[bytes, str]:
        """``(body, content_type)`` of a scrape, in Prometheus' text format."""
        return generate_latest(self), CONTENT_TYPE_LATEST


def _add(counter: dict[tuple, float], key: tuple, n: float) -> None:
    counter[key] = counter.get(key, 0) + n


def _observe(histograms: dict[tuple, list], key: tuple, seconds: float) -> None:
    tally = histograms.get(key)
    if tally is None:
        tally = histograms[key] = [0] * (len(BUCKETS) + 2)  # buckets, +Inf, then the sum
    tally[bisect_left(BUCKETS, seconds)] += 1
    tally[-1] += seconds


def _fmt_bound(bound: float) -> str:
    return repr(float(bound))


def merge_snapshots(snapshots: Iterable[dict]) -> dict:
    """Add up snapshots (see :meth:`RegistryMetrics.snapshot`): counters and
    histograms are summed; gauges summed, or the latest report taken, as
    each one says.  Returns
    ``{"counters"|"histograms"|"gauges": {name: {label tuple: value}}}``."""
    out: dict[str, dict[str, dict]] = {
        "counters": {n: {} for n in _COUNTERS},
        "histograms": {n: {} for n in _HISTOGRAMS},
        "gauges": {n: {} for n in _GAUGES},
    }
    for snap in snapshots:
        for name, rows in (snap.get("counters") or {}).items():
            if name in out["counters"]:
                target = out["counters"][name]
                for *key, value in rows:
                    target[tuple(key)] = target.get(tuple(key), 0) + value
        for name, rows in (snap.get("histograms") or {}).items():
            if name in out["histograms"]:
                target = out["histograms"][name]
                for *key, tally in rows:
                    if len(tally) != len(BUCKETS) + 2:
                        continue  # written with other buckets: not addable
                    have = target.get(tuple(key))
                    target[tuple(key)] = list(tally) if have is None else [a + b for a, b in zip(have, tally)]
        for name, rows in (snap.get("gauges") or {}).items():
            if name in out["gauges"]:
                combine: Callable = _latest if _GAUGES[name][2] == "latest" else (lambda a, b: a + b)
                target = out["gauges"][name]
                for *key, value in rows:
                    key_t = tuple(key)
                    target[key_t] = value if key_t not in target else combine(target[key_t], value)
    return out


def _latest(a: list, b: list) -> list:
    return b if b[1] > a[1] else a


def _snapshot_path(directory: str, pid: int) -> str:
    return os.path.join(directory, f"{pid}.json")


def _write_snapshot(directory: str, pid: int, snap: dict) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{pid}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(snap, f, separators=(",", ":"))
        os.replace(tmp, _snapshot_path(directory, pid))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_snapshots(directory: str, exclude_pid: int | None = None) -> list[dict]:
    snaps = []
    try:
        names = os.listdir(directory)
    except OSError:
        return snaps
    for name in names:
        if not name.endswith(".json") or name == f"{exclude_pid}.json":
            continue
        try:
            with open(os.path.join(directory, name)) as f:
                snaps.append(json.load(f))
        except (OSError, ValueError):
            continue  # vanished or unreadable: skip rather than fail the scrape
    return snaps


# -- the supervisor's side --------------------------------------------------------


@contextlib.contextmanager
def shared_between_workers() -> Iterator[str]:
    """Create the shared directory and name it in :data:`SHARED_DIR_ENV` for
    the workers forked inside the block; remove both afterwards."""
    directory = tempfile.mkdtemp(prefix="cargohold-metrics-")
    previous = os.environ.get(SHARED_DIR_ENV)
    os.environ[SHARED_DIR_ENV] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(SHARED_DIR_ENV, None)
        else:
            os.environ[SHARED_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Keep an exited worker's counters but drop its gauges (nothing of it
    is in flight any more)."""
    directory = os.environ.get(SHARED_DIR_ENV)
    if not directory:
        return
    path = _snapshot_path(directory, pid)
    try:
        with open(path) as f:
            snap = json.load(f)
    except (OSError, ValueError):
        return
    snap["gauges"] = {}
    try:
        _write_snapshot(directory, pid, snap)
    except OSError as e:
        log.warning("cannot update metrics of exited worker %d: %s", pid, e)


# -- the WSGI side ------------------------------------------------------------------


class MeteredApp:
    """WSGI middleware recording every request in ``metrics``: status, the
    route the app left in ``environ[ROUTE_KEY]``, body bytes both ways, and
    the time until the response body was sent (its iterable closed).  It
    also gives each request its id first thing (logs and reporters use it)
    and returns it in the ``X-Request-Id`` response header.

    Bytes in are what the app read of the request body, as counted by the
    :class:`cargohold.client_input.ClientInput` in ``environ[BODY_KEY]``
    (the one counter); bytes out are the response body bytes the server
    took.  ``on_finished(environ, status, seconds, bytes_in, bytes_out)``,
    if given, runs once the request is recorded."""

    def __init__(self, wsgi_app: Callable, metrics: RegistryMetrics,
                 on_finished: Callable[[dict, int, float, int, int], None] | None = None):
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.on_finished = on_finished

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = perf_counter()
        request_id = assign_request_id(environ)
        status = [500]

        def metered_start_response(status_line, headers, exc_info=None):
            status[0] = int(status_line[:3])
            headers.append(("X-Request-Id", request_id))
            return start_response(status_line, headers, exc_info)

        try:
            result = self.wsgi_app(environ, metered_start_response)
        except BaseException:
            _record(self, environ, 500, started, 0)
            raise
        cls = _SizedBody if hasattr(result, "__len__") else _MeteredBody
        return cls(result, self, environ, status, started)


def _record(metered: MeteredApp, environ: dict, status: int, started: float, sent: int) -> None:
    """One request is over: end its upload gauge, count it, tell ``on_finished``."""
    if environ.pop(UPLOAD_KEY, False):
        metered.metrics.upload_finished()
    seconds = perf_counter() - started
    body = environ.get(BODY_KEY)
    received = body.received if body is not None else 0
    metered.metrics.request(environ.get(ROUTE_KEY, UNMATCHED), environ.get("REQUEST_METHOD", ""), status,
                            seconds, received, sent)
    if metered.on_finished is not None:
        metered.on_finished(environ, status, seconds, received, sent)


class _MeteredBody:
    """The app's response iterable, counting bytes and recording on close."""

    __slots__ = ("_result", "_metered", "_environ", "_status", "_started", "_sent", "_done")

    def __init__(self, result, metered, environ, status, started):
        self._result = result
        self._metered = metered
        self._environ = environ
        self._status = status
        self._started = started
        self._sent = 0
        self._done = False

    def __iter__(self):
        for chunk in self._result:
            self._sent += len(chunk)
            yield chunk

    @property
    def file_body(self):
        """The app's :class:`~cargohold.filebody.FileBody`, if it returned
        one, for a server that sends the file itself (its bytes are counted
        from it at close)."""
        return file_body_of(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if not self._done:
                self._done = True
                file_body = file_body_of(self._result)
                _record(self._metered, self._environ, self._status[0], self._started,
                        self._sent if file_body is None else file_body.sent)


class _SizedBody(_MeteredBody):
    """A metered body whose length the server may use for Content-Length."""

    __slots__ = ()

    def __len__(self) -> int:
        return len(self._result)
