"""Background upkeep: purging abandoned upload sessions
(``storage.maintenance.uploadpurging``), as the reference registry does, and
scheduled garbage collection (``storage.maintenance.gc``, see
:mod:`cargohold.gc.schedule`).  Upload purging is skipped while read-only
mode is on (``storage.maintenance.readonly.enabled``, switched live by a
reload)."""

from __future__ import annotations

import logging

from cargohold import hookimpl, schedule

log = logging.getLogger(__name__)


@hookimpl
def cargohold_startup(app):
    maintenance = app.config["CARGOHOLD"]["storage"]["maintenance"]
    settings = maintenance["uploadpurging"]
    spawn_later = schedule.server_spawn_later()
    if spawn_later is None:
        return  # not under `cargohold serve` (e.g. a test client): nothing to schedule on
    if maintenance["gc"]["enabled"]:
        from cargohold.gc import schedule as gc_schedule

        gc_schedule.start(app, spawn_later)
    if not settings["enabled"]:
        return

    state = app.extensions["cargohold"]

    def purge_uploads():
        if state.config["storage"]["maintenance"]["readonly"]["enabled"]:
            log.info("upload purging skipped: the registry is in read-only mode")
        else:
            state.registry.uploads.purge(settings["age"], dry_run=settings["dryrun"])

    # A first pass soon after start, then every interval.
    schedule.every(settings["interval"], purge_uploads, spawn_later, first=min(60.0, settings["interval"]))
