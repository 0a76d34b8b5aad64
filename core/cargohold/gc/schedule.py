"""Scheduled garbage collection in the server (``storage.maintenance.gc``).

Every worker process schedules a run every ``interval`` (the first one
``interval`` after start, staggered by a random fraction of a minute); the
lease lets only one run at a time across all workers and replicas, and the
others log that and wait for the next interval.  A run is the same code as
``cargohold gc``: :func:`cargohold.gc.collect`, in a native thread (so
neither disk nor CPU work of the collection stalls the worker's requests).
Each run is logged and recorded in ``/metrics``.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("cargohold.gc")


def run_once(app) -> dict | None:
    """One scheduled collection: returns its report as a dict, or ``None``
    when another collection held the lease or it failed (logged)."""
    from cargohold.blocking import offload
    from cargohold.gc import collect
    from cargohold.gc.lease import LeaseError

    state = app.extensions["cargohold"]
    began = time.time()
    try:
        report = offload(collect, app).as_dict()
    except LeaseError as e:
        log.info("scheduled garbage collection skipped: %s", e)
        state.metrics.gc_run("skipped")
        return None
    except Exception:
        log.exception("scheduled garbage collection failed")
        state.metrics.gc_run("failed", time.time() - began)
        return None
    log.info("garbage collection %s %d blob(s) (%d bytes), %d manifest(s), %d link(s), %d repositor(ies), "
             "%d upload session(s) in %.1fs", "would sweep" if report["dry_run"] else "swept",
             report["blobs_swept"], report["bytes_reclaimed"], report["manifests_swept"], report["links_swept"],
             report["repositories_removed"], report["uploads_purged"], report["duration"])
    state.metrics.gc_run("completed", report["duration"], report["bytes_reclaimed"], report["blobs_swept"])
    return report


def start(app, spawn_later) -> None:
    """Schedule :func:`run_once` every ``storage.maintenance.gc.interval``
    with ``spawn_later(seconds, fn)`` (gevent's, under ``cargohold serve``)."""
    from cargohold.schedule import every

    every(app.config["CARGOHOLD"]["storage"]["maintenance"]["gc"]["interval"], lambda: run_once(app), spawn_later)
