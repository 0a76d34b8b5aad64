"""A per-process cache of directory listings, validated by the directory's
modification time.

Listing a large directory (thousands of tags) on every page of a paginated
walk is the cost that dominates ``tags/list``.  Drivers whose directory
``modtime`` changes whenever a child is added or removed (see
:meth:`StorageDriver.stat`) let us reuse a listing after one cheap ``stat``.
A modtime of 0 means "unknown": never cached.

Timestamps are coarse (a few ms on Linux), so two changes in the same tick
can share a modtime.  A listing is therefore cached only once its directory
has been quiet for :data:`QUIET_SECONDS`; any later change gets a newer
modtime, which invalidates it.
"""

from __future__ import annotations

import time

from cargohold.lru import LRU
from cargohold.storage.driver import StorageDriver

QUIET_SECONDS = 2.0


class ListingCache:
    """``names(path)``: the leaf names of ``driver.list(path)``, in order."""

    def __init__(self, driver: StorageDriver, capacity: int = 1024):
        self.driver = driver
        self._cache = LRU(capacity)

    def names(self, path: str) -> list[str]:
        modtime = self.driver.stat(path).modtime
        hit = self._cache.get(path)
        if hit is not None and modtime and hit[0] == modtime:
            return hit[1]
        names = [p.rpartition("/")[2] for p in self.driver.list(path)]
        if modtime and time.time() - modtime > QUIET_SECONDS:
            self._cache.put(path, (modtime, names))
        else:
            self._cache.pop(path)
        return names
