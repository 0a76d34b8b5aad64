"""Online garbage collection: reclaiming the space of what no tag reaches,
while registries keep serving the same storage.

* :mod:`cargohold.gc.usage`: the registry's side of the handshake;
* :mod:`cargohold.gc.lease`: one collector at a time, through the store;
* :mod:`cargohold.gc.collector`: mark and sweep;
* :mod:`cargohold.gc.schedule`: ``storage.maintenance.gc`` in the server.
"""
