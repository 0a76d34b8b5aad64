import pytest
from cargohold.testing.client import RegistryResponseError, make_image, sha256


@pytest.fixture
def cargohold_config(cargohold_config):
    return {**cargohold_config, "sizelimit": {"maxbytes": "64KiB"}}


def test_blobs_under_the_limit_are_stored(cargohold_registry_client):
    image = cargohold_registry_client.push_image("team/app", "v1", layer_size=1024)
    assert cargohold_registry_client.pull_image("team/app", "v1").digest == image.digest


def test_a_blob_over_the_limit_is_refused(cargohold_live):
    image = make_image(layer_size=100_000)
    with pytest.raises(RegistryResponseError) as refused:
        cargohold_live.client().push_image("team/app", "v2", image=image)
    assert (refused.value.status, refused.value.code) == (403, "DENIED")
    assert cargohold_live.client().request("HEAD", f"/v2/team/app/blobs/{sha256(image.layers[0])}").status == 404
