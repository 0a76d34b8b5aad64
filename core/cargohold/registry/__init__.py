"""The registry's logic over a storage driver: blobs, uploads, manifests,
tags, referrers and the catalog.  Nothing here knows about HTTP."""

from __future__ import annotations

import bisect
from typing import Iterator

from cargohold.gc.usage import DEFAULT_GRACE, UsageRecorder
from cargohold.registry.blobs import BlobStore
from cargohold.registry.catalog import Listings, iter_repositories
from cargohold.registry.manifests import DEFAULT_CACHE_BYTES, Manifests
from cargohold.registry.uploads import Uploads
from cargohold.storage.driver import StorageDriver


class Registry:
    """Facade the API handlers use; one per app (``app.extensions``)."""

    def __init__(self, driver: StorageDriver, manifest_cache_bytes: int = DEFAULT_CACHE_BYTES,
                 gc_grace: float = DEFAULT_GRACE, listing_mode: str = "auto"):
        self.driver = driver
        #: Uses of digests, recorded for the garbage collector (:mod:`cargohold.gc`).
        self.usage = UsageRecorder(driver, gc_grace)
        #: The catalog and tags lists (:mod:`cargohold.registry.catalog`).
        self.listings = Listings(driver, listing_mode)
        self.blobs = BlobStore(driver, self.usage, self.listings)
        self.uploads = Uploads(driver, self.blobs)
        self.manifests = Manifests(driver, self.blobs, manifest_cache_bytes, self.listings)

    def repositories(self) -> list[str]:
        """Every repository name, in lexical order."""
        return self.listings.repositories()

    def iter_repositories(self, last: str | None = None) -> Iterator[str]:
        """The repository names after ``last``, in lexical order, listed
        lazily: the way to read one page of a large catalog."""
        if self.listings.indexed:  # the index holds the sorted list already
            names = self.listings.repositories()
            return iter(names[bisect.bisect_right(names, last):] if last is not None else names)
        return iter_repositories(self.driver, last)


__all__ = ["Registry"]
