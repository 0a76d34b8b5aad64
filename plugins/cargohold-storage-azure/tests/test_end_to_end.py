"""The shared end-to-end suite: real ``cargohold serve`` processes and skopeo
against a registry stored in Azurite."""

import pytest

from cargohold.testing.backends import StorageBackendSuite
from cargohold_storage_azure import create_driver


class AzuriteBackend:
    """One container of the session's Azurite, for registries started with
    :attr:`env`.  :meth:`stop` and :meth:`start` stop and restart the
    emulator itself (same port, same data)."""

    def __init__(self, azurite, container: str):
        self.azurite = azurite
        self.params = azurite.params(container=container)
        self.env = {
            "CARGOHOLD_STORAGE": "azure",
            "CARGOHOLD_STORAGE_AZURE_ACCOUNTNAME": self.params["accountname"],
            "CARGOHOLD_STORAGE_AZURE_ACCOUNTKEY": self.params["accountkey"],
            "CARGOHOLD_STORAGE_AZURE_SERVICEURL": self.params["serviceurl"],
            "CARGOHOLD_STORAGE_AZURE_CONTAINER": container,
            "CARGOHOLD_STORAGE_AZURE_ROOTDIRECTORY": "registry",
        }

    def stop(self) -> None:
        self.azurite.stop()

    def start(self) -> None:
        self.azurite.start()

    def make_driver(self):
        return create_driver(dict(self.params, rootdirectory="registry"))


@pytest.fixture(scope="module")
def backend(azurite):
    return AzuriteBackend(azurite, "endtoend")


class TestAzureEndToEnd(StorageBackendSuite):
    """Uses the module's ``backend``."""
