"""Online garbage collection: reclaiming the space of what no tag reaches,
while registries keep serving the same storage.

* :mod:`cargohold.gc.usage`: the registry's side of the handshake;
* :mod:`cargohold.gc.lease`: one collector at a time, through the store;
* :mod:`cargohold.gc.collector`: mark and sweep;
* :mod:`cargohold.gc.schedule`: ``storage.maintenance.gc`` in the server;
* :func:`collect`: one run with an app's settings (the CLI and the schedule).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the registry imports cargohold.gc.usage: no import cycle at run time
    from cargohold.gc.collector import Progress, Report

__all__ = ["collect"]


def collect(app: Any, grace: float | None = None, delete_untagged: bool | None = None,
            dry_run: bool | None = None, progress: Progress | None = None) -> Report:
    """One garbage collection over ``app``'s storage, with the settings of
    ``storage.maintenance.gc`` unless given, emitting a ``delete`` event for
    every manifest and blob link swept.  Upload sessions older than
    ``storage.maintenance.uploadpurging.age`` go too.  Raises
    :class:`cargohold.gc.lease.LeaseError` when another collection holds the lease, and
    ``ValueError`` when ``grace`` is below the configured grace (requests
    record their uses only every ``configured grace / 2``)."""
    from cargohold import events
    from cargohold.gc.collector import Collector

    state = app.extensions["cargohold"]
    maintenance = state.config["storage"]["maintenance"]
    settings = maintenance["gc"]
    configured = settings["grace"]
    grace = configured if grace is None else grace
    if grace < configured:
        raise ValueError(f"a grace of {grace:g}s is below storage.maintenance.gc.grace ({configured:g}s): registries "
                         f"record uses of a blob only every {configured / 2:g}s, so a shorter grace could sweep "
                         "blobs in use; lower the configured grace (and restart the registries) first")

    def on_delete(repository: str, digest: str) -> None:
        events.emit_from(state.pm, events.DELETE, repository, digest=digest, agent="cargohold-gc")

    collector = Collector(
        state.driver, grace=grace,
        delete_untagged=settings["deleteuntagged"] if delete_untagged is None else delete_untagged,
        dry_run=settings["dryrun"] if dry_run is None else dry_run,
        upload_age=maintenance["uploadpurging"]["age"], on_delete=on_delete, progress=progress,
        listings=state.registry.listings)
    return collector.run()
