"""Online garbage collection on Azure Blob Storage (Azurite): the soak test
of :mod:`cargohold.testing.gc`, on a container of its own, with fewer
collections than the filesystem and S3 runs (Azurite is the slowest store
here)."""

from __future__ import annotations

from cargohold.testing.gc import soak


def test_gc_soak_azure(azurite_backend, tmp_path):
    backend = azurite_backend()
    print(soak(backend.env, backend.make_driver, tmp_path, cycles=8, min_seconds=20.0, max_seconds=120.0))
