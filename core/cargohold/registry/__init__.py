"""The registry's logic over a storage driver: blobs, uploads, manifests,
tags, referrers and the catalog.  Nothing here knows about HTTP."""

from __future__ import annotations

from cargohold.registry.blobs import BlobStore
from cargohold.registry.catalog import repositories
from cargohold.registry.manifests import DEFAULT_CACHE_BYTES, Manifests
from cargohold.registry.uploads import Uploads
from cargohold.storage.driver import StorageDriver


class Registry:
    """Facade the API handlers use; one per app (``app.extensions``)."""

    def __init__(self, driver: StorageDriver, manifest_cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.driver = driver
        self.blobs = BlobStore(driver)
        self.uploads = Uploads(driver, self.blobs)
        self.manifests = Manifests(driver, self.blobs, manifest_cache_bytes)

    def repositories(self) -> list[str]:
        return repositories(self.driver)


__all__ = ["Registry"]
