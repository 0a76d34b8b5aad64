"""The shared object-store end-to-end suite (real ``cargohold serve``
processes, real skopeo) against registries on a moto server."""

import pytest

from cargohold.testing.backends import StorageBackendSuite


class TestS3EndToEnd(StorageBackendSuite):
    @pytest.fixture(scope="class")
    @classmethod
    def backend(cls, moto_backend):
        return moto_backend
