"""The registry's logic over a storage driver: blobs, uploads, manifests,
tags, referrers and the catalog.  Nothing here knows about HTTP."""

from __future__ import annotations

from typing import Iterator

from cargohold.gc.usage import DEFAULT_GRACE, UsageRecorder
from cargohold.registry.blobs import BlobStore
from cargohold.registry.catalog import iter_repositories, repositories
from cargohold.registry.manifests import DEFAULT_CACHE_BYTES, Manifests
from cargohold.registry.uploads import Uploads
from cargohold.storage.driver import StorageDriver


class Registry:
    """Facade the API handlers use; one per app (``app.extensions``)."""

    def __init__(self, driver: StorageDriver, manifest_cache_bytes: int = DEFAULT_CACHE_BYTES,
                 gc_grace: float = DEFAULT_GRACE):
        self.driver = driver
        #: Uses of digests, recorded for the garbage collector (:mod:`cargohold.gc`).
        self.usage = UsageRecorder(driver, gc_grace)
        self.blobs = BlobStore(driver, self.usage)
        self.uploads = Uploads(driver, self.blobs)
        self.manifests = Manifests(driver, self.blobs, manifest_cache_bytes)

    def repositories(self) -> list[str]:
        return repositories(self.driver)

    def iter_repositories(self, last: str | None = None) -> Iterator[str]:
        """The repository names after ``last``, in lexical order, listed
        lazily: the way to read one page of a large catalog."""
        return iter_repositories(self.driver, last)


__all__ = ["Registry"]
