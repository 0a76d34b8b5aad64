"""The shared storage suite against S3Driver on a moto server, plus S3 specifics."""

import pytest

from cargohold.testing.storage import StorageDriverSuite


class TestS3Driver(StorageDriverSuite):
    @pytest.fixture
    def driver(self, make_driver):
        return make_driver()
