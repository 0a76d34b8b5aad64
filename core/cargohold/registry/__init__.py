"""The registry's logic over a storage driver: blobs, uploads, manifests,
tags, referrers and the catalog.  Nothing here knows about HTTP."""

from __future__ import annotations

from cargohold.gc.usage import DEFAULT_GRACE, UsageRecorder
from cargohold.registry.blobs import BlobStore
from cargohold.registry.catalog import Listings
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


__all__ = ["Registry"]
