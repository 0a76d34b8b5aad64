"""The listing index on Azure (Azurite), through a counting proxy."""

from __future__ import annotations

import types
import uuid
from urllib.parse import urlsplit

import pytest

from cargohold.testing.counting import CountingProxy
from cargohold.testing.listing import ListingIndexSuite
from cargohold_storage_azure import create_driver


class TestAzureListingIndex(ListingIndexSuite):
    @pytest.fixture
    def listing_backend(self, azurite):
        url = urlsplit(azurite.url)
        with CountingProxy(url.hostname, url.port) as proxy:
            params = azurite.params(container="listing", rootdirectory=f"index/{uuid.uuid4().hex[:12]}",
                                    serviceurl=f"{proxy.url}{url.path}")
            yield types.SimpleNamespace(storage={"azure": params}, proxy=proxy,
                                        make_driver=lambda: create_driver(dict(params)))
