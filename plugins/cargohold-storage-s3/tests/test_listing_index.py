"""The listing index on S3 (a moto server), through a counting proxy."""

from __future__ import annotations

import types
import uuid

import pytest

from cargohold.testing.counting import CountingProxy
from cargohold.testing.listing import ListingIndexSuite
from cargohold_storage_s3 import S3Driver, parse_settings


class TestS3ListingIndex(ListingIndexSuite):
    @pytest.fixture
    def listing_backend(self, moto_server, bucket):
        host, _, port = moto_server.address.rpartition(":")
        with CountingProxy(host, int(port)) as proxy:
            params = moto_server.params(bucket, rootdirectory=f"/index/{uuid.uuid4().hex}", regionendpoint=proxy.url)
            yield types.SimpleNamespace(storage={"s3": params}, proxy=proxy,
                                        make_driver=lambda: S3Driver(parse_settings(params)))
