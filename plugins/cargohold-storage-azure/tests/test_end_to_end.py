"""The shared end-to-end suite: real ``cargohold serve`` processes and skopeo
against a registry stored in Azurite."""

import pytest

from cargohold.testing.backends import StorageBackendSuite


@pytest.fixture(scope="module")
def backend(azurite_backend):
    return azurite_backend("endtoend")


class TestAzureEndToEnd(StorageBackendSuite):
    """Uses the module's ``backend``."""
