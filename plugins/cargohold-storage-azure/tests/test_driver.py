"""The storage suite against AzureDriver on Azurite."""

import uuid

import pytest

from cargohold.testing.storage import StorageDriverSuite
from cargohold_storage_azure import create_driver


class TestAzureDriver(StorageDriverSuite):
    """Below a root directory, in a container shared with other tests."""

    @pytest.fixture
    def driver(self, azurite):
        d = create_driver(azurite.params(container="suite", rootdirectory=f"registry/{uuid.uuid4().hex[:12]}"))
        yield d
        d.close()


class TestAzureDriverAtContainerRootSmallBlocks(StorageDriverSuite):
    """No root directory: paths map to blob names at the container's top,
    next to the driver's temporary blobs.  With the smallest block size, the
    suite's larger writes stage several blocks on temporary blobs and are
    copied into place (smaller ones are one-block puts)."""

    @pytest.fixture
    def driver(self, azurite):
        d = create_driver(azurite.params(blocksize="1MiB"))
        yield d
        d.close()
