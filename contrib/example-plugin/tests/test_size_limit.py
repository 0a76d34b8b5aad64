import pytest
from cargohold.testing.client import RegistryResponseError


@pytest.fixture
def cargohold_config(cargohold_config):
    return {**cargohold_config, "sizelimit": {"maxbytes": "1KiB"}}


def test_manifest_under_the_limit_is_stored(cargohold_registry_client):
    image = cargohold_registry_client.push_image("team/app", "v1", layers=1)
    assert cargohold_registry_client.pull_image("team/app", "v1").digest == image.digest


def test_manifest_over_the_limit_is_refused(cargohold_live):
    with pytest.raises(RegistryResponseError) as refused:
        cargohold_live.client().push_image("team/app", "v2", layers=12)
    assert (refused.value.status, refused.value.code) == (403, "DENIED")
    assert cargohold_live.client().request("GET", "/v2/team/app/manifests/v2").status == 404
