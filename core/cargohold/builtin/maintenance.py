"""Background upkeep: purging abandoned upload sessions
(``storage.maintenance.uploadpurging``), as the reference registry does, and
scheduled garbage collection (``storage.maintenance.gc``, see
:mod:`cargohold.gc.schedule`).  Upload purging is skipped while read-only
mode is on (``storage.maintenance.readonly.enabled``, switched live by a
reload)."""

from __future__ import annotations

import logging

from cargohold import hookimpl

log = logging.getLogger(__name__)


@hookimpl
def cargohold_startup(app):
    maintenance = app.config["CARGOHOLD"]["storage"]["maintenance"]
    settings = maintenance["uploadpurging"]
    try:
        from gevent import monkey, spawn_later
    except ImportError:  # pragma: no cover - gevent is a dependency
        return
    if not monkey.is_module_patched("socket"):
        return  # not under `cargohold serve` (e.g. a test client): nothing to schedule on
    if maintenance["gc"]["enabled"]:
        from cargohold.gc import schedule

        schedule.start(app, spawn_later)
    if not settings["enabled"]:
        return

    state = app.extensions["cargohold"]

    def run():
        try:
            if state.config["storage"]["maintenance"]["readonly"]["enabled"]:
                log.info("upload purging skipped: the registry is in read-only mode")
            else:
                state.registry.uploads.purge(settings["age"], dry_run=settings["dryrun"])
        except Exception:
            log.exception("upload purging failed")
        spawn_later(settings["interval"], run)

    # A first pass soon after start, then every interval.
    spawn_later(min(60.0, settings["interval"]), run)
